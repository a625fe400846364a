import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Starts a program that outlives vllmctl: its own session (no terminal, no Ctrl-C from
/// ours), stdin from /dev/null, stdout and stderr appended to a 0600 log file.
public enum Detached {
    public static func spawn(executable: String, arguments: [String], log: String) throws -> pid_t {
        var actions = posix_spawn_file_actions_t()
        posix_spawn_file_actions_init(&actions)
        defer { posix_spawn_file_actions_destroy(&actions) }
        posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0)
        posix_spawn_file_actions_addopen(&actions, 1, log, O_WRONLY | O_CREAT | O_APPEND, 0o600)
        posix_spawn_file_actions_adddup2(&actions, 1, 2)
        var attributes = posix_spawnattr_t()
        posix_spawnattr_init(&attributes)
        defer { posix_spawnattr_destroy(&attributes) }
        // POSIX_SPAWN_SETSID (glibc 2.26+): a session of its own, like setsid(1).
        posix_spawnattr_setflags(&attributes, Int16(0x80 | POSIX_SPAWN_SETSIGMASK | POSIX_SPAWN_SETSIGDEF))
        var none = sigset_t()
        sigemptyset(&none)
        posix_spawnattr_setsigmask(&attributes, &none)
        var defaults = sigset_t()
        sigemptyset(&defaults)
        for sig in [SIGINT, SIGTERM, SIGPIPE, SIGHUP] { sigaddset(&defaults, sig) }
        posix_spawnattr_setsigdefault(&attributes, &defaults)
        let argv = ([executable] + arguments).map { strdup($0) } + [nil]
        defer { argv.forEach { free($0) } }
        var pid: pid_t = 0
        let rc = posix_spawn(&pid, executable, &actions, &attributes, argv, environ)
        guard rc == 0 else {
            throw VLLMCtlError.invalidInput(
                "Cannot start `\(executable)` in the background: \(String(cString: strerror(rc)))",
                hint: "Run it in the foreground (without --background) to see why.")
        }
        return pid
    }

    /// This program's own path, to start another copy of it.
    public static func ownExecutable() -> String {
        var buffer = [CChar](repeating: 0, count: Int(PATH_MAX) + 1)
        let n = readlink("/proc/self/exe", &buffer, buffer.count - 1)
        if n > 0 {
            return buffer.withUnsafeBufferPointer {
                String(decoding: UnsafeRawBufferPointer(start: $0.baseAddress, count: n), as: UTF8.self)
            }
        }
        return CommandLine.arguments[0]
    }
}
