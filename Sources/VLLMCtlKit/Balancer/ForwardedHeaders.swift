import Foundation
import NIOCore
import NIOHTTP1

/// How request and response heads change on their way through the balancer: the proxy rules
/// of RFC 9110 §7.6.1 for hop-by-hop headers. Everything else, `Authorization` included,
/// passes untouched.
enum ForwardedHeaders {
    /// Headers that concern one connection only.
    static let hopByHop: Set<String> = [
        "connection", "keep-alive", "proxy-connection", "te", "trailer", "transfer-encoding", "upgrade",
        "proxy-authenticate", "proxy-authorization",
    ]

    /// The hop-by-hop headers of `headers`: the fixed list plus any named in `Connection`.
    static func connectionScoped(_ headers: HTTPHeaders) -> Set<String> {
        var names = hopByHop
        for value in headers["connection"] {
            for token in value.split(separator: ",") {
                names.insert(token.trimmingCharacters(in: .whitespaces).lowercased())
            }
        }
        return names
    }

    /// The request as sent to `replica`: HTTP/1.1 on a kept-alive connection, its body
    /// (buffered whole) framed by `Content-Length`, `Expect` answered already by the balancer,
    /// and `Host` set to the replica's `host:port`: the replica is an origin server reached by
    /// its own address, as nginx's `proxy_pass` does by default; the client's `Host` names the
    /// balancer's local port, which means nothing to the replica.
    static func request(_ head: HTTPRequestHead, bodyBytes: Int, replica: Replica) -> HTTPRequestHead {
        let drop = connectionScoped(head.headers).union(["host", "content-length", "expect"])
        var headers = HTTPHeaders()
        headers.add(name: "Host", value: replica.description)
        for (name, value) in head.headers where !drop.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        if bodyBytes > 0 || !["GET", "HEAD", "DELETE", "OPTIONS"].contains(head.method.rawValue) {
            headers.add(name: "Content-Length", value: String(bodyBytes))
        }
        return HTTPRequestHead(version: .http1_1, method: head.method, uri: head.uri, headers: headers)
    }

    /// The response as sent to the client: the replica's hop-by-hop headers dropped (NIO's
    /// encoder frames the body again: `Content-Length` when the replica gave one, else chunked
    /// for HTTP/1.1), in the client's HTTP version, with `Connection: close` when the client's
    /// connection ends after it.
    static func response(_ head: HTTPResponseHead, clientVersion: HTTPVersion, keepAlive: Bool)
        -> HTTPResponseHead
    {
        let drop = connectionScoped(head.headers)
        var headers = HTTPHeaders()
        for (name, value) in head.headers where !drop.contains(name.lowercased()) {
            headers.add(name: name, value: value)
        }
        if !keepAlive {
            headers.add(name: "Connection", value: "close")
        } else if clientVersion == .http1_0 {
            headers.add(name: "Connection", value: "keep-alive")
        }
        return HTTPResponseHead(version: clientVersion, status: head.status, headers: headers)
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
