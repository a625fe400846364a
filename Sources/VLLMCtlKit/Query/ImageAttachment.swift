import Foundation

/// An image for a multimodal chat request, carried as a base64 `data:` URL in an
/// `image_url` content part (what vLLM's OpenAI server accepts for vision models).
public struct ImageAttachment: Sendable, Equatable {
    /// Larger files are refused: base64 makes them a third bigger again, and vLLM's HTTP
    /// server and the model's processor are not built for payloads of that size.
    public static let maximumBytes = 20 * 1024 * 1024

    public var mimeType: String
    public var bytes: Data

    /// Checks that `bytes` are an image vLLM can decode, by their magic bytes (the file name
    /// is not trusted), and that they are not too big. `path` only names the file in errors.
    public init(bytes: Data, path: String, maximumBytes: Int = ImageAttachment.maximumBytes) throws {
        guard !bytes.isEmpty else {
            throw VLLMCtlError.invalidInput(
                "The image \(path) is empty", hint: "Pass a PNG, JPEG, GIF or WebP file.")
        }
        guard bytes.count <= maximumBytes else {
            throw VLLMCtlError.invalidInput(
                "The image \(path) is \(Self.megabytes(bytes.count)), more than the \(Self.megabytes(maximumBytes)) limit",
                hint: "Scale it down or re-encode it (e.g. as JPEG) and try again.")
        }
        guard let mimeType = Self.mimeType(of: bytes) else {
            throw VLLMCtlError.invalidInput(
                "\(path) is not a PNG, JPEG, GIF or WebP image (its first bytes are \(Self.hexPrefix(bytes)))",
                hint: "Pass an image file; convert other formats to PNG or JPEG first.")
        }
        self.mimeType = mimeType
        self.bytes = bytes
    }

    /// Reads and checks an image file. The size is checked before the file is read.
    public static func load(path: String, maximumBytes: Int = ImageAttachment.maximumBytes) throws
        -> ImageAttachment
    {
        let attributes: [FileAttributeKey: Any]
        do {
            attributes = try FileManager.default.attributesOfItem(atPath: path)
        } catch {
            throw VLLMCtlError.file(
                path: path, message: "cannot read the image: no such file, or no permission")
        }
        if attributes[.type] as? FileAttributeType == .typeDirectory {
            throw VLLMCtlError.invalidInput("\(path) is a directory", hint: "Pass an image file.")
        }
        if let size = attributes[.size] as? Int, size > maximumBytes {
            throw VLLMCtlError.invalidInput(
                "The image \(path) is \(megabytes(size)), more than the \(megabytes(maximumBytes)) limit",
                hint: "Scale it down or re-encode it (e.g. as JPEG) and try again.")
        }
        guard let data = FileManager.default.contents(atPath: path) else {
            throw VLLMCtlError.file(path: path, message: "cannot read the image")
        }
        return try ImageAttachment(bytes: data, path: path, maximumBytes: maximumBytes)
    }

    /// `data:image/png;base64,...`
    public var dataURL: String { "data:\(mimeType);base64,\(bytes.base64EncodedString())" }

    /// The chat content part that carries the image.
    public var contentPart: JSONValue {
        .object(["type": .string("image_url"), "image_url": .object(["url": .string(dataURL)])])
    }

    /// The MIME type from the file's magic bytes, for the formats vLLM's image loader (PIL)
    /// reads and browsers agree on.
    public static func mimeType(of bytes: Data) -> String? {
        let b = [UInt8](bytes.prefix(12))
        func starts(_ magic: [UInt8], at offset: Int = 0) -> Bool {
            b.count >= offset + magic.count && Array(b[offset..<offset + magic.count]) == magic
        }
        if starts([0x89, 0x50, 0x4E, 0x47, 0x0D, 0x0A, 0x1A, 0x0A]) { return "image/png" }
        if starts([0xFF, 0xD8, 0xFF]) { return "image/jpeg" }
        if starts(Array("GIF87a".utf8)) || starts(Array("GIF89a".utf8)) { return "image/gif" }
        if starts(Array("RIFF".utf8)) && starts(Array("WEBP".utf8), at: 8) { return "image/webp" }
        return nil
    }

    static func megabytes(_ count: Int) -> String {
        String(format: "%.1f MiB", Double(count) / 1_048_576)
    }

    static func hexPrefix(_ bytes: Data) -> String {
        bytes.prefix(8).map { String(format: "%02x", $0) }.joined(separator: " ")
    }
}
