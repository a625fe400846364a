import Foundation

/// One server-sent event of an OpenAI-style stream.
public enum SSEEvent: Sendable, Equatable {
    /// The `data:` payload of an event (for vLLM, one JSON chunk).
    case data(String)
    /// `data: [DONE]`, the end of the stream.
    case done
}

/// Splits a `text/event-stream` body into events, whatever the boundaries of the pieces it
/// arrives in: a piece may end inside a line, inside `\r\n`, or inside a UTF-8 character.
/// Bytes are buffered until a whole line is there, and lines are decoded only then.
///
/// Follows the SSE rules that matter here: `data:` lines (one optional space after the
/// colon) accumulate until a blank line dispatches them, joined by `\n`; comments (`:`) and
/// other fields (`event:`, `id:`, `retry:`) are ignored.
public struct SSEParser: Sendable {
    private var pending: [UInt8] = []
    private var dataLines: [String] = []
    private var lastWasCR = false
    public private(set) var sawDone = false

    public init() {}

    /// Feeds the next piece of the body; returns the events it completes.
    public mutating func feed(_ bytes: some Sequence<UInt8>) -> [SSEEvent] {
        var events: [SSEEvent] = []
        for byte in bytes {
            if byte == 0x0A && lastWasCR {
                // The `\n` of a `\r\n` whose `\r` already ended the line.
                lastWasCR = false
                continue
            }
            lastWasCR = byte == 0x0D
            if byte == 0x0A || byte == 0x0D {
                if let event = endLine() { events.append(event) }
            } else {
                pending.append(byte)
            }
        }
        return events
    }

    /// Ends the body: a last event without its blank line still counts.
    public mutating func finish() -> [SSEEvent] {
        var events: [SSEEvent] = []
        if !pending.isEmpty, let event = endLine() { events.append(event) }
        if let event = dispatch() { events.append(event) }
        return events
    }

    private mutating func endLine() -> SSEEvent? {
        let line = String(decoding: pending, as: UTF8.self)
        pending.removeAll(keepingCapacity: true)
        if line.isEmpty { return dispatch() }
        if line.hasPrefix(":") { return nil }
        let name: Substring
        var value: Substring
        if let colon = line.firstIndex(of: ":") {
            name = line[..<colon]
            value = line[line.index(after: colon)...]
            if value.hasPrefix(" ") { value = value.dropFirst() }
        } else {
            name = line[...]
            value = ""
        }
        if name == "data" { dataLines.append(String(value)) }
        return nil
    }

    private mutating func dispatch() -> SSEEvent? {
        guard !dataLines.isEmpty else { return nil }
        let data = dataLines.joined(separator: "\n")
        dataLines.removeAll()
        if data.trimmingCharacters(in: .whitespaces) == "[DONE]" {
            sawDone = true
            return .done
        }
        return .data(data)
    }
}
