import Foundation

#if canImport(Glibc)
    import Glibc
#elseif canImport(Darwin)
    import Darwin
#endif

/// `--save-dir DIR`: one JSON file per query, `query-20250506T120000.123Z.json`, holding the
/// request body and the response. The API key is never in it (it travels in a header that is
/// not saved). Files are 0600 and a new directory 0700: prompts and answers may be private.
public enum QueryArchive {
    /// Writes the file and returns its path. A name that is taken gets `-2`, `-3`, …
    @discardableResult
    public static func save(_ result: QueryResult, directory: String, now: Date = Date()) throws -> String {
        do {
            try FileManager.default.createDirectory(
                atPath: directory, withIntermediateDirectories: true, attributes: [.posixPermissions: 0o700])
        } catch {
            throw VLLMCtlError.file(
                path: directory,
                message: "cannot create the --save-dir directory (\(error.localizedDescription))")
        }
        let data = document(result, savedAt: now).encoded(pretty: true) + Data("\n".utf8)
        let base = directory + "/" + fileStem(now)
        for attempt in 1...1000 {
            let path = base + (attempt == 1 ? "" : "-\(attempt)") + ".json"
            let fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o600)
            if fd < 0 {
                if errno == EEXIST { continue }
                throw VLLMCtlError.file(
                    path: path, message: "cannot write (\(String(cString: strerror(errno))))")
            }
            let handle = FileHandle(fileDescriptor: fd, closeOnDealloc: true)
            do {
                try handle.write(contentsOf: data)
                try handle.close()
            } catch {
                throw VLLMCtlError.file(path: path, message: "cannot write (\(error.localizedDescription))")
            }
            return path
        }
        throw VLLMCtlError.file(path: base + ".json", message: "too many files with this time stamp")
    }

    /// `{saved_at, url, status, request, response}`.
    public static func document(_ result: QueryResult, savedAt: Date) -> JSONValue {
        var object: [String: JSONValue] = [
            "saved_at": .string(timestamp(savedAt)),
            "url": .string(result.url),
            "status": .int(result.status),
            "request": result.request,
            "response": result.response,
        ]
        if let field = result.structuredOutputField {
            object["structured_output_field"] = .string(field.rawValue)
        }
        return .object(object)
    }

    /// `query-20250506T120000.123Z`, in UTC so that names sort in time order everywhere.
    static func fileStem(_ date: Date) -> String {
        let formatter = DateFormatter()
        formatter.locale = Locale(identifier: "en_US_POSIX")
        formatter.timeZone = TimeZone(identifier: "UTC")
        formatter.dateFormat = "yyyyMMdd'T'HHmmss.SSS'Z'"
        return "query-" + formatter.string(from: date)
    }

    static func timestamp(_ date: Date) -> String {
        let formatter = ISO8601DateFormatter()
        formatter.formatOptions = [.withInternetDateTime, .withFractionalSeconds]
        return formatter.string(from: date)
    }
}
