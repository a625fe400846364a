import CCurl
import Foundation

/// One libcurl easy handle. Not thread-safe: use it from one thread at a time.
final class CurlEasy {

    let handle: UnsafeMutableRawPointer
    /// CURLOPT_ERRORBUFFER: libcurl keeps the pointer, so the buffer lives as long as the handle.
    private let errorBuffer = UnsafeMutablePointer<CChar>.allocate(capacity: Int(CURL_ERROR_SIZE) + 1)

    init() throws {
        if let problem = vc_load() {
            throw VLLMCtlError.http(
                url: "", message: String(cString: problem),
                hint: "vllmctl needs libcurl at run time: install it (`apt-get install libcurl4`).")
        }
        guard let handle = vc_easy_init() else {
            throw VLLMCtlError.http(
                url: "", message: "libcurl could not create a handle",
                hint: "The machine may be out of memory.")
        }
        self.handle = handle
        errorBuffer.initialize(repeating: 0, count: Int(CURL_ERROR_SIZE) + 1)
    }

    deinit {
        vc_easy_cleanup(handle)
        errorBuffer.deallocate()
    }

    func set(_ option: CURLoption, _ value: Int) { _ = vc_setopt_long(handle, option, value) }
    func set(_ option: CURLoption, _ value: String) {
        // libcurl copies string options (since 7.17), so the temporary C string may go away.
        _ = value.withCString { vc_setopt_str(handle, option, $0) }
    }

    /// Performs the transfer. `onBody` sees each piece of the body as it arrives and returns
    /// false to abort. Returns the HTTP status and the response headers.
    ///
    /// `proxy` is the only proxy used (nil: none; the environment's are ignored). `bridge`,
    /// when given, is the abstract Unix socket to connect to instead of the URL's host (see
    /// `UnixBridge`): libcurl then never resolves the host name, which may only resolve inside
    /// the cluster.
    func perform(
        _ request: HTTPRequest, proxy: String? = nil, bridge: String? = nil,
        onBody: @escaping (UnsafeRawBufferPointer) -> Bool
    ) throws -> (status: Int, headers: [String: String]) {
        vc_easy_reset(handle)
        set(CURLOPT_NOSIGNAL, 1)
        set(CURLOPT_URL, request.url)
        set(CURLOPT_CONNECTTIMEOUT_MS, Int(request.connectTimeout * 1000))
        if let total = request.timeout { set(CURLOPT_TIMEOUT_MS, Int(total * 1000)) }
        set(CURLOPT_FOLLOWLOCATION, 0)
        if let caCert = request.caCertificate { set(CURLOPT_CAINFO, caCert) }
        // "" switches the environment's proxies off (libcurl reads http_proxy and friends).
        set(CURLOPT_PROXY, proxy ?? "")
        if let bridge {
            set(CURLOPT_ABSTRACT_UNIX_SOCKET, bridge)
            set(CURLOPT_FORBID_REUSE, 1)
        }
        _ = vc_setopt_ptr(handle, CURLOPT_ERRORBUFFER, errorBuffer)
        errorBuffer[0] = 0

        switch request.method {
        case "GET": set(CURLOPT_HTTPGET, 1)
        case "POST": set(CURLOPT_POST, 1)
        default: set(CURLOPT_CUSTOMREQUEST, request.method)
        }
        let body = request.body ?? Data()
        if request.method != "GET" {
            _ = vc_setopt_off(handle, CURLOPT_POSTFIELDSIZE_LARGE, curl_off_t(body.count))
        }

        var headerList: UnsafeMutablePointer<curl_slist>? = nil
        for (name, value) in request.headers {
            headerList = vc_slist_append(headerList, "\(name): \(value)")
        }
        // vLLM answers quickly; do not wait for `100 Continue`.
        headerList = vc_slist_append(headerList, "Expect:")
        defer { vc_slist_free_all(headerList) }
        _ = vc_setopt_slist(handle, CURLOPT_HTTPHEADER, headerList)

        let sink = Sink(onBody: onBody)
        let sinkPointer = Unmanaged.passUnretained(sink).toOpaque()
        _ = vc_setopt_ptr(handle, CURLOPT_WRITEDATA, sinkPointer)
        _ = vc_setopt_write_cb(handle) { data, size, count, user in
            let sink = Unmanaged<Sink>.fromOpaque(user!).takeUnretainedValue()
            let length = size * count
            return sink.onBody(UnsafeRawBufferPointer(start: data, count: length)) ? length : 0
        }
        _ = vc_setopt_ptr(handle, CURLOPT_HEADERDATA, sinkPointer)
        _ = vc_setopt_header_cb(handle) { data, size, count, user in
            let sink = Unmanaged<Sink>.fromOpaque(user!).takeUnretainedValue()
            let length = size * count
            let line = String(decoding: UnsafeRawBufferPointer(start: data, count: length), as: UTF8.self)
            if line.hasPrefix("HTTP/") { sink.headers = [:] }
            if let colon = line.firstIndex(of: ":") {
                let name = line[..<colon].lowercased()
                let value = line[line.index(after: colon)...].trimmingCharacters(in: .whitespacesAndNewlines)
                sink.headers[name] = value
            }
            return length
        }

        let code: CURLcode = body.withUnsafeBytes { raw in
            if request.method != "GET" {
                // COPYPOSTFIELDS copies the bytes, so they need not outlive this call.
                _ = vc_setopt_ptr(
                    handle, CURLOPT_COPYPOSTFIELDS,
                    UnsafeMutableRawPointer(mutating: raw.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!))
            }
            return vc_easy_perform(handle)
        }
        withExtendedLifetime(sink) {}
        guard code == CURLE_OK else {
            throw curlError(code, url: request.url)
        }
        var status = 0
        _ = vc_getinfo_long(handle, CURLINFO_RESPONSE_CODE, &status)
        return (status, sink.headers)
    }

    /// A failed transfer as an error that says whether the server was observed doing something
    /// (`.http`: refused, a broken answer) or could not be reached for a reason on this side
    /// (`.unreachable`: no route, a timeout on the way, DNS, TLS set-up, a proxy).
    private func curlError(_ code: CURLcode, url: String) -> VLLMCtlError {
        let detail = String(cString: errorBuffer)
        let message = detail.isEmpty ? String(cString: vc_easy_strerror(code)) : detail
        var osErrno = 0
        _ = vc_getinfo_long(handle, CURLINFO_OS_ERRNO, &osErrno)
        switch code {
        case CURLE_COULDNT_CONNECT where osErrno == Int(ECONNREFUSED):
            return .http(
                url: url, message: "connection refused (\(message))",
                hint:
                    "Nothing listens there: is the job running and its server up (`vllmctl status`)? If you go through a tunnel, is it open (`vllmctl tunnel`)?"
            )
        case CURLE_COULDNT_CONNECT:
            return .unreachable(
                url: url, message: "cannot connect (\(message))",
                hint:
                    "This machine has no way to that address: from a laptop, use a profile with `ssh_host` (requests then go through the login node) or `vllmctl tunnel`."
            )
        case CURLE_OPERATION_TIMEDOUT:
            return .unreachable(
                url: url, message: "timed out (\(message))",
                hint:
                    "The server may be busy or unreachable from here; raise the timeout, ask for fewer tokens, or use `vllmctl tunnel`."
            )
        case CURLE_COULDNT_RESOLVE_HOST:
            return .unreachable(
                url: url, message: "the host name does not resolve (\(message))",
                hint: "Check the URL, or reach the node through `vllmctl tunnel`.")
        case CURLE_COULDNT_RESOLVE_PROXY:
            return .unreachable(
                url: url, message: "the proxy failed (\(message))",
                hint: "Check the profile's `http_proxy`, or leave it out to connect directly.")
        case CURLE_RECV_ERROR where message.lowercased().contains("proxy"):
            return .unreachable(
                url: url, message: "the proxy failed (\(message))",
                hint: "Check the profile's `http_proxy`, or leave it out to connect directly.")
        case CURLE_PEER_FAILED_VERIFICATION, CURLE_SSL_CONNECT_ERROR, CURLE_SSL_CACERT_BADFILE:
            return .unreachable(
                url: url, message: "TLS failed (\(message))",
                hint: "Check --cacert, or use http:// for a server without TLS.")
        case CURLE_WRITE_ERROR:
            return .http(url: url, message: "the transfer was stopped (\(message))", hint: "")
        case CURLE_RECV_ERROR, CURLE_PARTIAL_FILE, CURLE_GOT_NOTHING:
            return .http(
                url: url, message: "the connection broke (\(message))",
                hint: "The server may have crashed; check `vllmctl logs`.")
        default:
            return .http(url: url, message: message, hint: "")
        }
    }

    private final class Sink {
        let onBody: (UnsafeRawBufferPointer) -> Bool
        var headers: [String: String] = [:]
        init(onBody: @escaping (UnsafeRawBufferPointer) -> Bool) { self.onBody = onBody }
    }
}
