import Foundation
import NIOCore
import NIOHTTP1

/// How request and response heads change on their way through the balancer: the proxy rules
/// of RFC 9110 §7.6.1 for hop-by-hop headers. Everything else, `Authorization` included,
/// passes untouched.
enum ForwardedHeaders {
    /// Headers that concern one connection only (lowercase).
    static let hopByHop: [String] = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// Request headers the balancer sets itself, or has answered (`Expect`).
    static let replacedInRequests = ["host", "content-length", "expect"]

    /// The names `Connection` lists in `headers` (lowercase): hop-by-hop too. Usually none, or
    /// `keep-alive`.
    static func connectionTokens(_ headers: HTTPHeaders) -> [Substring] {
        var tokens: [Substring] = []
        for value in headers["connection"] {
            for token in value.split(separator: ",") {
                let trimmed = token.trimmingCharacters(in: .whitespaces).lowercased()
                if !trimmed.isEmpty { tokens.append(Substring(trimmed)) }
            }
        }
        return tokens
    }

    /// Whether `name` is hop-by-hop: on the fixed list, in `tokens` (from `Connection`) or in
    /// `also`; compared without case, and without making lowercase copies of every name.
    static func isConnectionScoped(_ name: String, tokens: [Substring], also: [String] = []) -> Bool {
        hopByHop.contains { equalIgnoringASCIICase(name, $0) }
            || also.contains { equalIgnoringASCIICase(name, $0) }
            || tokens.contains { equalIgnoringASCIICase(name, $0) }
    }

    /// `a == b.lowercased()` for a lowercase `b`, compared byte by byte (header names are ASCII).
    static func equalIgnoringASCIICase(_ a: String, _ b: some StringProtocol) -> Bool {
        a.utf8.count == b.utf8.count
            && zip(a.utf8, b.utf8).allSatisfy { x, y in
                x == y || (x >= UInt8(ascii: "A") && x <= UInt8(ascii: "Z") && x | 0x20 == y)
            }
    }

    /// The request as sent to `replica`: HTTP/1.1 on a kept-alive connection, its body
    /// (buffered whole) framed by `Content-Length`, `Expect` answered already by the balancer,
    /// and `Host` set to the replica's `host:port`: the replica is an origin server reached by
    /// its own address, as nginx's `proxy_pass` does by default; the client's `Host` names the
    /// balancer's local port, which means nothing to the replica.
    static func request(_ head: HTTPRequestHead, bodyBytes: Int, replica: Replica) -> HTTPRequestHead {
        let tokens = connectionTokens(head.headers)
        var headers = HTTPHeaders()
        headers.reserveCapacity(head.headers.count + 2)
        headers.add(name: "Host", value: replica.description)
        for (name, value) in head.headers
        where !isConnectionScoped(name, tokens: tokens, also: replacedInRequests) {
            headers.add(name: name, value: value)
        }
        let bodyless: Bool
        switch head.method {
        case .GET, .HEAD, .DELETE, .OPTIONS: bodyless = true
        default: bodyless = false
        }
        if bodyBytes > 0 || !bodyless { headers.add(name: "Content-Length", value: String(bodyBytes)) }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: headers)
    }

    /// The response as sent to the client: the replica's hop-by-hop headers dropped (NIO's
    /// encoder frames the body again: `Content-Length` when the replica gave one, else chunked
    /// for HTTP/1.1), in the client's HTTP version, with `Connection: close` when the client's
    /// connection ends after it.
    static func response(_ head: HTTPResponseHead, clientVersion: HTTPVersion, keepAlive: Bool)
        -> HTTPResponseHead
    {
        let tokens = connectionTokens(head.headers)
        var out = head
        out.version = clientVersion
        // Usually there is nothing to drop (vLLM's heads have no hop-by-hop header), and the
        // head goes on as it came.
        if head.headers.contains(where: { isConnectionScoped($0.name, tokens: tokens) }) {
            var headers = HTTPHeaders()
            headers.reserveCapacity(head.headers.count + 1)
            for (name, value) in head.headers where !isConnectionScoped(name, tokens: tokens) {
                headers.add(name: name, value: value)
            }
            out.headers = headers
        }
        if !keepAlive {
            out.headers.add(name: "Connection", value: "close")
        } else if clientVersion == .http1_0 {
            out.headers.add(name: "Connection", value: "keep-alive")
        }
        return out
    }
}

/// Answers the balancer writes itself, in OpenAI's error shape.
enum BalancerAnswer {
    /// `{"error": {"message", "type", "param", "code"}}`.
    static func errorBody(message: String, type: String, code: Int) -> String {
        let object: [String: Any] = [
            "error": ["message": message, "type": type, "param": NSNull(), "code": code] as [String: Any]
        ]
        let data = (try? JSONSerialization.data(withJSONObject: object, options: [.sortedKeys])) ?? Data()
        return String(decoding: data, as: UTF8.self)
    }
}
