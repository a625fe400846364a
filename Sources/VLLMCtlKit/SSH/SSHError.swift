import CLibSSH2
import Foundation

/// An SSH failure in plain words: what happened (with libssh2's own message where there is
/// one), then what to do.
public struct SSHError: Error, Equatable, Sendable, CustomStringConvertible, LocalizedError {
    /// Where: `alias (host:port)`.
    public var host: String
    public var message: String
    public var hint: String
    /// The connection to the server broke (or could not be made): a new session may work.
    /// False for refusals (host key, authentication) and for the server's own errors.
    public var connectionLost: Bool

    public init(host: String, message: String, hint: String, connectionLost: Bool = false) {
        self.host = host
        self.message = message
        self.hint = hint
        self.connectionLost = connectionLost
    }

    public var description: String { "ssh \(host): \(message). \(hint)" }
    public var errorDescription: String? { description }
}

/// How a session turns libssh2's failures into `SSHError`s.
extension SSHSession {
    /// libssh2's last error message for this session.
    var lastError: (code: Int32, message: String) {
        var message: UnsafeMutablePointer<CChar>?
        var length: Int32 = 0
        let code = libssh2_session_last_error(raw, &message, &length, 0)
        return (code, message.map { String(cString: $0) } ?? "")
    }

    func error(_ what: String, hint: String) -> SSHError {
        let last = lastError
        let said = last.message.isEmpty ? "" : " (libssh2: \(last.message))"
        let lost = Self.connectionErrors.contains(last.code)
        if lost { markBroken() }
        return SSHError(host: options.place, message: what + said, hint: hint, connectionLost: lost)
    }

    /// A libssh2 error code in words, for when libssh2's last message belongs to another call.
    static func describe(_ code: Int32) -> String {
        switch code {
        case LIBSSH2_ERROR_SOCKET_RECV: return "reading from the connection failed"
        case LIBSSH2_ERROR_SOCKET_SEND: return "writing to the connection failed"
        case LIBSSH2_ERROR_SOCKET_DISCONNECT: return "the server disconnected"
        case LIBSSH2_ERROR_SOCKET_TIMEOUT, LIBSSH2_ERROR_TIMEOUT: return "the server stopped answering"
        default: return "libssh2 error \(code)"
        }
    }

    /// libssh2's errors that mean the connection itself failed (not a refusal by the server).
    static let connectionErrors: Set<Int32> = [
        LIBSSH2_ERROR_SOCKET_SEND, LIBSSH2_ERROR_SOCKET_RECV, LIBSSH2_ERROR_SOCKET_DISCONNECT,
        LIBSSH2_ERROR_SOCKET_TIMEOUT, LIBSSH2_ERROR_TIMEOUT, LIBSSH2_ERROR_BANNER_RECV,
        LIBSSH2_ERROR_DECRYPT,
    ]
}
