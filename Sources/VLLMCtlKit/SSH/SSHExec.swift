import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Exec: one remote command over a "session" channel, with its stdin, stdout, stderr and exit
/// status. Use only inside `SSHSession.perform`.
extension SSHChannel {
    /// Runs `command` (a line for the remote user's shell), feeding it `input`, and collects
    /// its output until it exits or `timeout` passes (then it throws `commandTimedOut`).
    public static func execute(
        _ command: String, input: Data?, on session: SSHSession, timeout: Duration, argv: [String]
    ) throws -> CommandResult {
        try session.checkOpen()
        session.setBlocking(true)
        guard
            let channel = SSHChannel.open(
                "session", on: session, window: 2 * 1024 * 1024, packetSize: 32768)
        else {
            throw session.error(
                "cannot open a channel",
                hint: "The server may limit sessions per connection (MaxSessions); try again")
        }
        guard channel.start("exec", command) == 0 else {
            throw session.error("the server refused to run `\(argv.first ?? "")`", hint: "Try again")
        }
        return try channel.collect(input: input ?? Data(), timeout: timeout, argv: argv)
    }

    /// Writes stdin and reads both output streams without blocking, so that a command that
    /// writes much before it reads cannot deadlock against us.
    private func collect(input: Data, timeout: Duration, argv: [String]) throws -> CommandResult {
        session.setBlocking(false)
        defer { session.setBlocking(true) }
        let seconds = Double(timeout.components.seconds) + Double(timeout.components.attoseconds) / 1e18
        let deadline = Date().addingTimeInterval(seconds)
        var written = 0
        var eofSent = false
        var out = Data(), err = Data()
        var buffer = [UInt8](repeating: 0, count: 32768)
        while true {
            var progressed = false
            if !eofSent {
                if written < input.count {
                    let n = input.withUnsafeBytes { raw in
                        write(
                            raw.baseAddress!.assumingMemoryBound(to: CChar.self) + written,
                            count: input.count - written)
                    }
                    if n > 0 {
                        written += n
                        progressed = true
                    } else if n != Int(LIBSSH2_ERROR_EAGAIN) {
                        // The command stopped reading (exited); the rest of stdin is dropped.
                        written = input.count
                    }
                }
                if written >= input.count {
                    let r = sendEOF()
                    if r != LIBSSH2_ERROR_EAGAIN {
                        eofSent = true
                        progressed = true
                    }
                }
            }
            for stream in [Int32(0), Int32(SSH_EXTENDED_DATA_STDERR)] {
                while true {
                    let n = buffer.withUnsafeMutableBytes { raw in
                        read(
                            into: raw.baseAddress!.assumingMemoryBound(to: CChar.self), count: raw.count,
                            stream: stream)
                    }
                    if n > 0 {
                        if stream == 0 {
                            out.append(contentsOf: buffer[0..<n])
                        } else {
                            err.append(contentsOf: buffer[0..<n])
                        }
                        progressed = true
                    } else if n == 0 || n == Int(LIBSSH2_ERROR_EAGAIN) {
                        break
                    } else {
                        throw session.error(
                            "reading the output of `\(argv.first ?? "")` failed", hint: "Try again")
                    }
                }
            }
            if receivedEOF { break }
            if progressed { continue }
            guard Date() < deadline else {
                throw VLLMCtlError.commandTimedOut(argv: argv, seconds: seconds)
            }
            session.waitSocket(until: deadline)
        }
        // The exit status arrives after the end of output and before the server closes the
        // channel. Only a close that completed proves it arrived: libssh2 reports 0 for a status
        // it never received, so a connection lost now must not read as success.
        var lost: Int32 = 0
        for step in [close, waitClosed] where lost == 0 {
            while true {
                let r = step()
                if r == 0 { break }
                if r != LIBSSH2_ERROR_EAGAIN {
                    lost = r
                    break
                }
                guard Date() < deadline else {
                    throw VLLMCtlError.commandTimedOut(argv: argv, seconds: seconds)
                }
                session.waitSocket(until: deadline)
            }
        }
        if lost != 0 {
            // libssh2's last message may be an older EAGAIN's; say the failing call's own code.
            let last = session.lastError
            let said = last.code == lost && !last.message.isEmpty ? last.message : SSHSession.describe(lost)
            session.markBroken()
            throw SSHError(
                host: session.options.place,
                message:
                    "the connection was lost after `\(argv.first ?? "")` ended its output but before its exit status arrived (\(said)), so whether it succeeded is unknown",
                hint:
                    "Check what it was to do before running it again (for a deployment: `vllmctl status`); the login node or the network may have dropped the connection",
                connectionLost: true)
        }
        isClosedByPeer = true
        var status = exitStatus
        if let signal = exitSignal { status = 128 + Self.signalNumber(signal) }
        return CommandResult(
            status: status, stdout: String(decoding: out, as: UTF8.self),
            stderr: String(decoding: err, as: UTF8.self))
    }

    private static func signalNumber(_ name: String) -> Int32 {
        switch name {
        case "HUP": return SIGHUP
        case "INT": return SIGINT
        case "KILL": return SIGKILL
        case "TERM": return SIGTERM
        case "PIPE": return SIGPIPE
        case "SEGV": return SIGSEGV
        case "ABRT": return SIGABRT
        default: return 0
        }
    }
}
