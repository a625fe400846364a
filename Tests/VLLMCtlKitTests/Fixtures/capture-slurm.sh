#!/usr/bin/env bash
# Captures squeue/sacct output from the live local cluster (make cluster-up) into fixtures,
# using the exact argv vllmctl sends (see Squeue/Sacct in Sources/VLLMCtlKit/Slurm).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
# The marks carry a token (random per call in vllmctl; fixed here, SlurmParsingTests uses it).
token=fixture0token
row=$'\x1e'"$token"
f=$'\x1f'"$token"
fmt_q="$row%i$f%u$f%T$f%r$f%N$f%M$f%L$f%j$f%Z"
fmt_a="JobID,JobName,User,State,Reason,NodeList,Elapsed,ExitCode,WorkDir"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
sub() { sbatch --parsable --output=/dev/null --chdir=/tmp "$@"; }
running=$(sub --job-name=vllmctl-running --wrap 'sleep 60')
held=$(sub --job-name=vllmctl-held --hold --wrap 'true')
toobig=$(sub --job-name='vllmctl-wants|all' --gres=gpu:2 --begin=now+1hour --wrap 'true')
# A plain job, and one whose name tries to forge a row for it (Slurm takes newlines and
# control characters in names): the forged row must not appear.
plain=$(sub --job-name=plain --hold --wrap 'true')
forger=$(sub --job-name="$(printf 'x\n\036guessed0token%s\037guessed0tokenvllmctl-forged\n%s\037vllmctl-forged' "$plain" "$plain")" --hold --wrap 'true')
ok=$(sub --job-name=vllmctl-done --wrap 'true')
bad=$(sub --job-name=vllmctl-failed --wrap 'exit 3')
cancel=$(sub --job-name=vllmctl-cancelled --wrap 'sleep 60')
sleep 3
scancel "$cancel"
squeue --noheader --format="$fmt_q" --jobs="$running,$held,$toobig,$plain,$forger" > "$here/squeue-live.txt"
squeue --noheader --format="$fmt_q" --jobs=999999 > /dev/null 2> "$here/squeue-invalid-job.txt" || true
for _ in $(seq 1 30); do
  # slurmdbd catches up asynchronously: wait until every row has its final state and name.
  n=$(sacct --noheader --parsable2 --allocations --format=JobName,State --jobs="$ok,$bad,$cancel" | grep -cE '^vllmctl-.*\|(COMPLETED|FAILED|CANCELLED)' || true)
  [[ "$n" -ge 3 ]] && break; sleep 1
done
sacct --noheader --parsable --delimiter="$f" --allocations --format="$fmt_a" --jobs="$running,$ok,$bad,$cancel,$plain,$forger" > "$here/sacct-ended.txt"
# Partitions, one per line (AllocNodes: renewal's login-node mode, docs/RENEW.md).
scontrol show partition -o > "$here/scontrol-partitions.txt"
scancel "$running" "$held" "$toobig" "$plain" "$forger"
echo "captured into $here"
