import Foundation

/// What a colleague needs to use a deployment: the seed's `server_connection_info.txt`.
public struct ConnectionInfo: Sendable, Equatable, Codable {
    /// The server's host: the compute node's address or name.
    public var host: String
    /// The server's port.
    public var port: Int
    /// The key the server requires (`Authorization: Bearer …`).
    public var apiKey: String
    /// The model name requests use.
    public var servedModelName: String

    /// Connection info from its parts.
    public init(host: String, port: Int, apiKey: String, servedModelName: String) {
        self.host = host
        self.port = port
        self.apiKey = apiKey
        self.servedModelName = servedModelName
    }

    /// `http://HOST:PORT`.
    public var serverURL: String { "http://\(Self.urlHost(host)):\(port)" }
    /// `http://HOST:PORT/v1`, the base URL OpenAI clients take.
    public var baseURL: String { serverURL + "/v1" }

    /// IPv6 literals go in brackets inside URLs.
    static func urlHost(_ host: String) -> String {
        host.contains(":") && !host.hasPrefix("[") ? "[\(host)]" : host
    }

    /// The curl command from the seed, for this server. It runs verbatim in a POSIX shell: the
    /// model name is JSON-escaped, and then escaped for the single-quoted shell word.
    public var curlCommand: String {
        let model = Self.curlModelLiteral(servedModelName)
        return """
            curl -X POST "\(serverURL)/v1/completions" \\
              -H "Content-Type: application/json" \\
              -H "Authorization: Bearer \(apiKey)" \\
              -d '{"model":"\(model)", "prompt":"Hello, world", "max_tokens":100}'
            """
    }

    /// The file's text, byte for byte the seed's layout, ending with a newline.
    public var text: String {
        """
        Server URL: \(serverURL)
        API Key: \(apiKey)
        Example curl command:
        \(curlCommand)

        """
    }

    /// The served name as it appears inside `-d '…'`: a JSON string body, with each `'`
    /// closed, escaped and reopened for the shell.
    public static func curlModelLiteral(_ name: String) -> String {
        jsonStringBody(name).replacingOccurrences(of: "'", with: #"'\''"#)
    }

    /// `value` escaped as the inside of a JSON string.
    public static func jsonStringBody(_ value: String) -> String {
        var out = ""
        for scalar in value.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where scalar.value < 0x20:
                out += String(format: "\\u%04x", scalar.value)
            default: out.unicodeScalars.append(scalar)
            }
        }
        return out
    }

    /// Shell exports for `eval`.
    public var environmentExports: String {
        "export OPENAI_BASE_URL=\(Shell.quote(baseURL)) OPENAI_API_KEY=\(Shell.quote(apiKey))\n"
    }
}

/// The JSON sidecar the job writes beside the text file.
public struct ConnectionRecord: Sendable, Equatable, Codable {
    /// `http://HOST:PORT` (`server_url`).
    public var serverURL: String
    /// The key the server requires (`api_key`).
    public var apiKey: String
    /// The server's host, as in its URL (the node's address).
    public var host: String
    /// The server's port.
    public var port: Int
    /// The model the server loaded.
    public var model: String
    /// The model name requests use (`served_model_name`).
    public var servedModelName: String
    /// The Slurm job that wrote it (`job_id`).
    public var jobID: String
    /// The node the job runs on.
    public var node: String
    /// When the job started the server (ISO 8601).
    public var startedAt: String
    /// When the server first answered (ISO 8601).
    public var readyAt: String?
    /// When the job stopped the server (ISO 8601); nil while it runs.
    public var endedAt: String?

    /// Whether what the job wrote can be used as it is: a key of the safe alphabet (it is
    /// printed into shell lines and curl commands) and an http(s) URL. The file lives on the
    /// cluster, so it is read as untrusted.
    public var isWellFormed: Bool {
        (try? APIKey(apiKey)) != nil && URLTarget(url: serverURL) != nil
    }

    enum CodingKeys: String, CodingKey {
        case serverURL = "server_url"
        case apiKey = "api_key"
        case host, port, model
        case servedModelName = "served_model_name"
        case jobID = "job_id"
        case node
        case startedAt = "started_at"
        case readyAt = "ready_at"
        case endedAt = "ended_at"
    }

    /// The part colleagues need, as in `server_connection_info.txt`.
    public var connection: ConnectionInfo {
        ConnectionInfo(host: host, port: port, apiKey: apiKey, servedModelName: servedModelName)
    }
}

/// File names inside a deployment's directory on the cluster.
public enum DeploymentFiles {
    /// The seed's connection file, ``ConnectionInfo/text`` (0600).
    public static let infoText = "server_connection_info.txt"
    /// The JSON sidecar, a ``ConnectionRecord`` (0600).
    public static let infoJSON = "server_connection_info.json"
    /// The API key, read by the job into `VLLM_API_KEY` (0600).
    public static let apiKey = "api_key"
    /// The job script.
    public static let script = "job.sbatch"
    /// The deployment's layered settings (JSON, no key): what `scale` submits more replicas
    /// with, also from another machine.
    public static let settings = "deployment.json"
    /// Written by `scale` before it drains job `jobID`'s replica: running endpoints stop
    /// sending it new requests at their next refresh (``ReplicaSet``). Named by job, since the
    /// jobs of a renewal chain share one directory.
    public static func draining(jobID: String) -> String { "draining-\(jobID)" }
    /// The job's standard output.
    public static func stdout(jobID: String) -> String { "slurm-\(jobID).out" }
    /// The job's standard error.
    public static func stderr(jobID: String) -> String { "slurm-\(jobID).err" }
    /// The Ray log of one node of a multi-node job (`ray start` on that node, stdout and
    /// stderr): `ray-node2-1234.log`.
    public static func rayLog(node: String, jobID: String) -> String { "ray-\(node)-\(jobID).log" }
}
