import CLibSSH2
import Foundation

/// The SFTP subsystem of a session. It holds its session, which owns the subsystem's handle
/// (and shuts it down when it closes); use it only inside `SSHSession.perform`. Paths that are
/// not absolute are relative to the remote home.
public final class SFTP {
    let session: SSHSession
    /// Borrowed from the session: valid while the session is open, which every public method
    /// checks first.
    let raw: OpaquePointer

    init(session: SSHSession, raw: OpaquePointer) {
        self.session = session
        self.raw = raw
    }

    /// The SFTP status of the last failure (LIBSSH2_FX_*), 0 when the failure was not SFTP's.
    private var status: UInt {
        libssh2_session_last_errno(session.raw) == LIBSSH2_ERROR_SFTP_PROTOCOL
            ? libssh2_sftp_last_error(raw) : 0
    }

    private var missing: Bool {
        status == LIBSSH2_FX_NO_SUCH_FILE || status == LIBSSH2_FX_NO_SUCH_PATH
    }

    private func failure(_ path: String, _ what: String) -> SSHError {
        let code = status
        let detail = code == 0 ? "" : " (SFTP status \(code)\(Self.statusName(code)))"
        return session.error(
            "\(path): \(what)\(detail)", hint: "Check that the path exists and that you may write there")
    }

    private static func statusName(_ code: UInt) -> String {
        switch code {
        case LIBSSH2_FX_NO_SUCH_FILE: return ": no such file"
        case LIBSSH2_FX_PERMISSION_DENIED: return ": permission denied"
        case LIBSSH2_FX_FAILURE: return ": failure"
        case LIBSSH2_FX_NO_SUCH_PATH: return ": no such path"
        case LIBSSH2_FX_FILE_ALREADY_EXISTS: return ": file exists"
        case LIBSSH2_FX_NO_SPACE_ON_FILESYSTEM: return ": no space"
        default: return ""
        }
    }

    /// The file's bytes from `offset`, or nil when it does not exist.
    public func read(_ path: String, from offset: Int = 0) throws -> Data? {
        try session.checkOpen()
        guard
            let handle = libssh2_sftp_open_ex(
                raw, path, UInt32(path.utf8.count), UInt(LIBSSH2_FXF_READ), 0, LIBSSH2_SFTP_OPENFILE)
        else {
            if missing { return nil }
            throw failure(path, "cannot be opened for reading")
        }
        defer { libssh2_sftp_close_handle(handle) }
        if offset > 0 { libssh2_sftp_seek64(handle, UInt64(offset)) }
        var data = Data()
        var buffer = [UInt8](repeating: 0, count: 65536)
        while true {
            let n = buffer.withUnsafeMutableBytes { b in
                libssh2_sftp_read(handle, b.baseAddress!.assumingMemoryBound(to: CChar.self), b.count)
            }
            if n == 0 { break }
            if n < 0 { throw failure(path, "cannot be read") }
            data.append(contentsOf: buffer[0..<n])
        }
        return data
    }

    /// Writes `data` through a new temporary file beside `path`, created exclusively with
    /// `mode`, then renamed over `path`. On any failure the temporary file is removed.
    /// `fallbackRename` is called when the SFTP rename fails (SFTP v3 refuses to replace an
    /// existing file); it must rename atomically (e.g. `mv -f` over exec).
    public func writeAtomically(
        _ data: Data, to path: String, mode: Int, fallbackRename: (String, String) throws -> Void
    ) throws {
        try session.checkOpen()
        let directory = (path as NSString).deletingLastPathComponent
        let base = (path as NSString).lastPathComponent
        let temp =
            (directory.isEmpty ? "" : directory + "/") + ".\(base).tmp-"
            + String(UInt64.random(in: 0...UInt64.max), radix: 36)
        let flags = UInt(LIBSSH2_FXF_WRITE | LIBSSH2_FXF_CREAT | LIBSSH2_FXF_EXCL)
        guard
            let handle = libssh2_sftp_open_ex(
                raw, temp, UInt32(temp.utf8.count), flags, mode, LIBSSH2_SFTP_OPENFILE)
        else {
            throw failure(path, "cannot be written (creating \(temp) failed)")
        }
        var closed = false
        do {
            // The server applies its umask to the mode; set the exact mode on the open file
            // (it can only become stricter than requested by the umask, never looser).
            var attrs = LIBSSH2_SFTP_ATTRIBUTES()
            attrs.flags = UInt(LIBSSH2_SFTP_ATTR_PERMISSIONS)
            attrs.permissions = UInt(mode)
            if libssh2_sftp_fstat_ex(handle, &attrs, 1) != 0 { throw failure(temp, "cannot set its mode") }
            var offset = 0
            while offset < data.count {
                let n = data.withUnsafeBytes { b in
                    libssh2_sftp_write(
                        handle, b.baseAddress!.assumingMemoryBound(to: CChar.self) + offset,
                        min(data.count - offset, 1 << 20))
                }
                if n < 0 { throw failure(temp, "cannot be written") }
                offset += n
            }
            _ = libssh2_sftp_fsync(handle)  // fsync@openssh.com; best effort
            closed = true
            if libssh2_sftp_close_handle(handle) != 0 { throw failure(temp, "cannot be closed") }
            let renameFlags = Int(
                LIBSSH2_SFTP_RENAME_OVERWRITE | LIBSSH2_SFTP_RENAME_ATOMIC | LIBSSH2_SFTP_RENAME_NATIVE)
            if libssh2_sftp_rename_ex(
                raw, temp, UInt32(temp.utf8.count), path, UInt32(path.utf8.count), renameFlags) != 0
            {
                try fallbackRename(temp, path)
            }
        } catch {
            if !closed { libssh2_sftp_close_handle(handle) }
            _ = libssh2_sftp_unlink_ex(raw, temp, UInt32(temp.utf8.count))
            throw error
        }
    }

    /// Creates `path` and its missing parents with `mode`.
    public func makeDirectory(_ path: String, mode: Int) throws {
        try session.checkOpen()
        var prefix = path.hasPrefix("/") ? "/" : ""
        for part in path.split(separator: "/") where part != "." {
            prefix += (prefix.isEmpty || prefix == "/" ? "" : "/") + part
            if isDirectory(prefix) { continue }
            if libssh2_sftp_mkdir_ex(raw, prefix, UInt32(prefix.utf8.count), mode) != 0
                && !isDirectory(prefix)
            {
                throw failure(prefix, "cannot create the directory")
            }
        }
    }

    /// `path` itself with `mode`, its parents as needed; fails if `path` exists.
    public func makeNewDirectory(_ path: String, mode: Int) throws {
        try session.checkOpen()
        let parent = (path as NSString).deletingLastPathComponent
        if !parent.isEmpty { try makeDirectory(parent, mode: 0o700) }
        if libssh2_sftp_mkdir_ex(raw, path, UInt32(path.utf8.count), mode) != 0 {
            throw failure(path, "cannot create the deployment directory (it may exist already; deploy again)")
        }
    }

    private func isDirectory(_ path: String) -> Bool {
        var attrs = LIBSSH2_SFTP_ATTRIBUTES()
        guard libssh2_sftp_stat_ex(raw, path, UInt32(path.utf8.count), LIBSSH2_SFTP_STAT, &attrs) == 0 else {
            return false
        }
        return attrs.permissions & UInt(LIBSSH2_SFTP_S_IFMT) == UInt(LIBSSH2_SFTP_S_IFDIR)
    }

    /// The file's permission bits, or nil when it does not exist.
    public func mode(_ path: String) throws -> Int? {
        try session.checkOpen()
        var attrs = LIBSSH2_SFTP_ATTRIBUTES()
        guard libssh2_sftp_stat_ex(raw, path, UInt32(path.utf8.count), LIBSSH2_SFTP_STAT, &attrs) == 0 else {
            if missing { return nil }
            throw failure(path, "cannot be inspected")
        }
        return Int(attrs.permissions & 0o7777)
    }

    /// Removes a file; a missing one is fine.
    public func unlink(_ path: String) throws {
        try session.checkOpen()
        if libssh2_sftp_unlink_ex(raw, path, UInt32(path.utf8.count)) != 0 && !missing {
            throw failure(path, "cannot be removed")
        }
    }

    /// The absolute form of `path` on the server (`.` is the home directory).
    public func realpath(_ path: String) throws -> String {
        try session.checkOpen()
        var buffer = [CChar](repeating: 0, count: 4097)
        let n = libssh2_sftp_symlink_ex(
            raw, path, UInt32(path.utf8.count), &buffer, UInt32(buffer.count - 1), LIBSSH2_SFTP_REALPATH)
        guard n > 0 else { throw failure(path, "cannot be resolved") }
        return String(decoding: buffer[0..<Int(n)].map { UInt8(bitPattern: $0) }, as: UTF8.self)
    }
}
