import CLibSSH2
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// An exec channel: one remote command with its stdin, stdout, stderr and exit status. It
/// holds its session, so the session outlives it. Use only inside `SSHSession.perform`.
public final class SSHChannel {
    let session: SSHSession
    let raw: OpaquePointer

    init(session: SSHSession) throws {
        try session.checkOpen()
        self.session = session
        libssh2_session_set_blocking(session.raw, 1)
        guard
            let channel = libssh2_channel_open_ex(
                session.raw, "session", 7, 2 * 1024 * 1024, 32768,
                nil, 0)
        else {
            throw session.error(
                "cannot open a channel",
                hint: "The server may limit sessions per connection (MaxSessions); try again")
        }
        raw = channel
    }

    /// Whether the remote side has closed; freeing an open channel would wait for the command.
    private var finished = false

    deinit {
        // A closed session has freed its channels with it.
        if session.isClosed { return }
        // Freeing a channel whose command still runs (after a timeout) would block until the
        // command ends: give it half a second, then leave the rest to the session's cleanup.
        // (libssh2 1.10 cannot send a signal; the remote command runs on without its output.)
        libssh2_session_set_blocking(session.raw, 0)
        let deadline = Date().addingTimeInterval(finished ? 5 : 0.5)
        while libssh2_channel_free(raw) == LIBSSH2_ERROR_EAGAIN && Date() < deadline {
            try? waitSocket(until: deadline)
        }
        libssh2_session_set_blocking(session.raw, 1)
    }

    /// Runs `command` (a line for the remote user's shell), feeding it `input`, and collects
    /// its output until it exits or `timeout` passes (then it throws `commandTimedOut`).
    public static func execute(
        _ command: String, input: Data?, on session: SSHSession, timeout: Duration, argv: [String]
    ) throws -> CommandResult {
        let channel = try SSHChannel(session: session)
        let rc = libssh2_channel_process_startup(channel.raw, "exec", 4, command, UInt32(command.utf8.count))
        guard rc == 0 else {
            throw session.error("the server refused to run `\(argv.first ?? "")`", hint: "Try again")
        }
        return try channel.collect(input: input ?? Data(), timeout: timeout, argv: argv)
    }

    /// Writes stdin and reads both output streams without blocking, so that a command that
    /// writes much before it reads cannot deadlock against us.
    private func collect(input: Data, timeout: Duration, argv: [String]) throws -> CommandResult {
        let s = session.raw
        libssh2_session_set_blocking(s, 0)
        defer { libssh2_session_set_blocking(s, 1) }
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
                        libssh2_channel_write_ex(
                            self.raw, 0, raw.baseAddress!.assumingMemoryBound(to: CChar.self) + written,
                            input.count - written)
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
                    let r = libssh2_channel_send_eof(raw)
                    if r != LIBSSH2_ERROR_EAGAIN {
                        eofSent = true
                        progressed = true
                    }
                }
            }
            for stream in [Int32(0), Int32(SSH_EXTENDED_DATA_STDERR)] {
                while true {
                    let n = buffer.withUnsafeMutableBytes { raw in
                        libssh2_channel_read_ex(
                            self.raw, stream, raw.baseAddress!.assumingMemoryBound(to: CChar.self), raw.count)
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
            if libssh2_channel_eof(raw) != 0 { break }
            if progressed { continue }
            guard Date() < deadline else {
                throw VLLMCtlError.commandTimedOut(argv: argv, seconds: seconds)
            }
            try waitSocket(until: deadline)
        }
        // The exit status arrives after the end of output and before the server closes the
        // channel. Only a close that completed proves it arrived: libssh2 reports 0 for a status
        // it never received, so a connection lost now must not read as success.
        var lost: Int32 = 0
        while true {
            let r = libssh2_channel_close(raw)
            if r == 0 { break }
            if r != LIBSSH2_ERROR_EAGAIN {
                lost = r
                break
            }
            guard Date() < deadline else { throw VLLMCtlError.commandTimedOut(argv: argv, seconds: seconds) }
            try waitSocket(until: deadline)
        }
        while lost == 0 {
            let r = libssh2_channel_wait_closed(raw)
            if r == 0 { break }
            if r != LIBSSH2_ERROR_EAGAIN {
                lost = r
                break
            }
            guard Date() < deadline else { throw VLLMCtlError.commandTimedOut(argv: argv, seconds: seconds) }
            try waitSocket(until: deadline)
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
        finished = true
        var status = libssh2_channel_get_exit_status(raw)
        var signalName: UnsafeMutablePointer<CChar>?
        var signalLength = 0
        if libssh2_channel_get_exit_signal(raw, &signalName, &signalLength, nil, nil, nil, nil) == 0,
            let signalName
        {
            if signalLength > 0 { status = 128 + Self.signalNumber(String(cString: signalName)) }
            libssh2_free(session.raw, signalName)
        }
        return CommandResult(
            status: status, stdout: String(decoding: out, as: UTF8.self),
            stderr: String(decoding: err, as: UTF8.self))
    }

    /// Waits for the session's socket in the direction libssh2 is blocked on.
    func waitSocket(until deadline: Date) throws {
        let directions = libssh2_session_block_directions(session.raw)
        var events: Int16 = 0
        if directions & LIBSSH2_SESSION_BLOCK_INBOUND != 0 { events |= Int16(POLLIN) }
        if directions & LIBSSH2_SESSION_BLOCK_OUTBOUND != 0 { events |= Int16(POLLOUT) }
        if events == 0 { events = Int16(POLLIN) }
        var pfd = pollfd(fd: session.socket, events: events, revents: 0)
        let ms = max(0, min(1000, Int32(deadline.timeIntervalSinceNow * 1000)))
        _ = poll(&pfd, 1, ms)
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
