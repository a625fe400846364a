import Foundation
import Subprocess

#if canImport(Glibc)
    import Glibc
#endif

/// Runs programs on this machine through swift-subprocess (argv, no shell) and uses the local
/// filesystem.
public struct LocalHost: ClusterHost {
    /// This machine.
    public init() {}

    public var displayName: String { "local" }

    public func run(_ argv: [String], input: String?, timeout: Duration) async throws -> CommandResult {
        guard let program = argv.first else {
            throw VLLMCtlError.invalidInput("An empty command was given", hint: "This is a bug in vllmctl.")
        }
        let arguments = Arguments(Array(argv.dropFirst()))
        let limit = 32 << 20
        // A subprocess whose end is never reported must not hold vllmctl past the limit:
        // withDeadline cancels the work at the limit and returns within its 5 s grace even
        // then (a task group would wait for it).
        return try await withDeadline(
            timeout,
            onTimeout: {
                VLLMCtlError.commandTimedOut(argv: argv, seconds: Double(timeout.components.seconds))
            }
        ) {
            do {
                // Found on PATH first (access(2) per directory): given a bare name, Subprocess
                // forks a child per PATH entry until one execs, which costs a fork of this
                // process for each directory before the right one.
                let executable: Executable =
                    program.contains("/")
                    ? .path(.init(program))
                    : .path(try await Executable.name(program).resolveExecutablePath(in: .inherit))
                // Without input, stdin is /dev/null: no pipe, and none of the tasks Subprocess
                // runs to write one.
                if let input {
                    return try await Self.collect(executable, arguments, input: .string(input), limit: limit)
                }
                return try await Self.collect(executable, arguments, input: .none, limit: limit)
            } catch let error as SubprocessError {
                if "\(error)".contains("xecutable") || "\(error)".contains("No such file") {
                    throw VLLMCtlError.commandNotFound(
                        program,
                        hint:
                            "Is it installed and on PATH? Slurm's commands must run where vllmctl runs, or set `ssh_host` in the cluster profile."
                    )
                }
                throw error
            }
        }
    }

    private static func collect(
        _ executable: Executable, _ arguments: Arguments, input: some InputProtocol, limit: Int
    ) async throws -> CommandResult {
        let result = try await Subprocess.run(
            executable, arguments: arguments, input: input,
            output: .bytes(limit: limit), error: .bytes(limit: limit))
        let status: Int32
        switch result.terminationStatus {
        case .exited(let code): status = code
        case .signaled(let signal): status = 128 + signal
        }
        // The standard library's UTF-8 decoding is much faster than Subprocess's generic one,
        // which shows with squeue's thousands of lines.
        return CommandResult(
            status: status, stdout: String(decoding: result.standardOutput, as: UTF8.self),
            stderr: String(decoding: result.standardError, as: UTF8.self))
    }

    public func readFile(_ path: String) async throws -> Data? {
        guard FileManager.default.fileExists(atPath: path) else { return nil }
        do {
            return try Data(contentsOf: URL(fileURLWithPath: path))
        } catch {
            throw VLLMCtlError.file(path: path, message: "cannot be read: \(error.localizedDescription)")
        }
    }

    public func writeFileAtomically(_ data: Data, to path: String, mode: Int) async throws {
        try LocalFiles.writeAtomically(data, to: path, mode: mode_t(mode))
    }

    public func makeDirectory(_ path: String, mode: Int) async throws {
        do {
            try FileManager.default.createDirectory(
                atPath: path, withIntermediateDirectories: true,
                attributes: [.posixPermissions: mode])
        } catch {
            throw VLLMCtlError.file(
                path: path, message: "cannot create the directory: \(error.localizedDescription)")
        }
    }

    public func makeNewDirectory(_ path: String, mode: Int) async throws {
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty { try await makeDirectory(parent, mode: 0o700) }
        guard mkdir(path, mode_t(mode)) == 0 else {
            let reason = errno == EEXIST ? "it exists already" : String(cString: strerror(errno))
            throw VLLMCtlError.file(
                path: path,
                message:
                    "cannot create the deployment directory: \(reason). Deploy again (a new directory name is picked each time)"
            )
        }
    }

    public func removeFile(_ path: String) async throws {
        if unlink(path) != 0 && errno != ENOENT {
            throw VLLMCtlError.file(
                path: path, message: "cannot be removed: \(String(cString: strerror(errno)))")
        }
    }

    public func homeDirectory() async throws -> String {
        FileManager.default.homeDirectoryForCurrentUser.path
    }

    public func userName() async throws -> String { Self.currentUser() }

    /// The user this process runs as (`getpwuid(geteuid())`).
    public static func currentUser() -> String {
        if let pw = getpwuid(geteuid()), let name = pw.pointee.pw_name { return String(cString: name) }
        return String(geteuid())
    }

    public func readFile(_ path: String, from offset: Int) async throws -> Data? {
        guard let handle = FileHandle(forReadingAtPath: path) else {
            if FileManager.default.fileExists(atPath: path) {
                throw VLLMCtlError.file(path: path, message: "cannot be read (permissions?)")
            }
            return nil
        }
        defer { try? handle.close() }
        do {
            try handle.seek(toOffset: UInt64(offset))
            return try handle.readToEnd() ?? Data()
        } catch {
            return Data()
        }
    }
}

/// Local file helpers shared by the local host and the local deployment records.
public enum LocalFiles {
    /// Writes through a temporary file in the same directory, created with `mode` (O_EXCL, so
    /// it is never more open than `mode` for a moment), fsynced, then renamed over `path`.
    public static func writeAtomically(_ data: Data, to path: String, mode: mode_t) throws {
        let directory = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        var lastError: Int32 = 0
        for _ in 0..<8 {
            let suffix = String(UInt64.random(in: 0...UInt64.max), radix: 36)
            let temp = (directory.isEmpty ? "." : directory) + "/.\(base).tmp-\(suffix)"
            let fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode)
            if fd < 0 {
                lastError = errno
                if lastError == EEXIST { continue }
                break
            }
            var ok = fchmod(fd, mode) == 0
            if ok {
                ok = data.withUnsafeBytes { raw -> Bool in
                    var offset = 0
                    while offset < raw.count {
                        let n = write(fd, raw.baseAddress! + offset, raw.count - offset)
                        if n < 0 {
                            if errno == EINTR { continue }
                            return false
                        }
                        offset += n
                    }
                    return true
                }
            }
            if ok { ok = fsync(fd) == 0 }
            lastError = errno
            close(fd)
            if ok && rename(temp, path) == 0 { return }
            lastError = errno
            unlink(temp)
            break
        }
        throw VLLMCtlError.file(
            path: path, message: "cannot be written: \(String(cString: strerror(lastError)))")
    }
}
