#!/usr/bin/env bash
# Captures squeue/sacct output from the live local cluster (make cluster-up) into fixtures,
# using the exact argv vllmctl sends (see Squeue/Sacct in Sources/VLLMCtlKit/Slurm).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
fmt_q=$'%i\x1f%j\x1f%u\x1f%T\x1f%r\x1f%N\x1f%M\x1f%L\x1f%Z'
fmt_a="JobID,JobName,User,State,Reason,NodeList,Elapsed,ExitCode,WorkDir"
tmp="$(mktemp -d)"; trap 'rm -rf "$tmp"' EXIT
sub() { sbatch --parsable --output=/dev/null --chdir=/tmp "$@"; }
running=$(sub --job-name=vllmctl-running --wrap 'sleep 60')
held=$(sub --job-name=vllmctl-held --hold --wrap 'true')
toobig=$(sub --job-name='vllmctl-wants|all' --gres=gpu:2 --begin=now+1hour --wrap 'true')
ok=$(sub --job-name=vllmctl-done --wrap 'true')
bad=$(sub --job-name=vllmctl-failed --wrap 'exit 3')
cancel=$(sub --job-name=vllmctl-cancelled --wrap 'sleep 60')
sleep 3
scancel "$cancel"
squeue --noheader --format="$fmt_q" --jobs="$running,$held,$toobig" > "$here/squeue-live.txt"
squeue --noheader --format="$fmt_q" --jobs=999999 > /dev/null 2> "$here/squeue-invalid-job.txt" || true
for _ in $(seq 1 30); do
  # slurmdbd catches up asynchronously: wait until every row has its final state and name.
  n=$(sacct --noheader --parsable2 --allocations --format=JobName,State --jobs="$ok,$bad,$cancel" | grep -cE '^vllmctl-.*\|(COMPLETED|FAILED|CANCELLED)' || true)
  [[ "$n" -ge 3 ]] && break; sleep 1
done
sacct --noheader --parsable2 --allocations --format="$fmt_a" --jobs="$running,$ok,$bad,$cancel" > "$here/sacct-ended.txt"
scancel "$running" "$held" "$toobig"
echo "captured into $here"
