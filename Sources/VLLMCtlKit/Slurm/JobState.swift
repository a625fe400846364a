/// A Slurm job state, as squeue's `%T` and sacct's `State` print it.
public enum JobState: String, Sendable, CaseIterable, Codable {
    case bootFail = "BOOT_FAIL"
    case cancelled = "CANCELLED"
    case completed = "COMPLETED"
    case completing = "COMPLETING"
    case configuring = "CONFIGURING"
    case deadline = "DEADLINE"
    case failed = "FAILED"
    case nodeFail = "NODE_FAIL"
    case outOfMemory = "OUT_OF_MEMORY"
    case pending = "PENDING"
    case preempted = "PREEMPTED"
    case requeued = "REQUEUED"
    case requeueFed = "REQUEUE_FED"
    case requeueHold = "REQUEUE_HOLD"
    case resizing = "RESIZING"
    case revoked = "REVOKED"
    case running = "RUNNING"
    case signaling = "SIGNALING"
    case specialExit = "SPECIAL_EXIT"
    case stageOut = "STAGE_OUT"
    case stopped = "STOPPED"
    case suspended = "SUSPENDED"
    case timeout = "TIMEOUT"
    /// A state this version of vllmctl does not know.
    case unknown = "UNKNOWN"

    /// Parses squeue's and sacct's spellings: `CANCELLED by 1000`, `RUNNING`, and the short
    /// codes (`PD`, `R`, `CG`, ...).
    public init(slurm text: String) {
        if let state = JobState(rawValue: text) {
            self = state
            return
        }
        var word = text.split(separator: " ").first.map(String.init)?.uppercased() ?? ""
        while word.hasSuffix("+") { word.removeLast() }
        if let state = JobState(rawValue: word) {
            self = state
            return
        }
        switch word {
        case "BF": self = .bootFail
        case "CA": self = .cancelled
        case "CD": self = .completed
        case "CG": self = .completing
        case "CF": self = .configuring
        case "DL": self = .deadline
        case "F": self = .failed
        case "NF": self = .nodeFail
        case "OOM": self = .outOfMemory
        case "PD": self = .pending
        case "PR": self = .preempted
        case "RQ": self = .requeued
        case "RF": self = .requeueFed
        case "RH": self = .requeueHold
        case "RS": self = .resizing
        case "RV": self = .revoked
        case "R": self = .running
        case "SI": self = .signaling
        case "SE": self = .specialExit
        case "SO": self = .stageOut
        case "ST": self = .stopped
        case "S": self = .suspended
        case "TO": self = .timeout
        default: self = .unknown
        }
    }

    /// The job is over and will not run again by itself.
    public var isFinal: Bool {
        switch self {
        case .bootFail, .cancelled, .completed, .deadline, .failed, .nodeFail, .outOfMemory,
            .preempted, .revoked, .specialExit, .timeout:
            return true
        default:
            return false
        }
    }

    /// The job ended in a way that means the deployment failed.
    public var isFailure: Bool { isFinal && self != .completed }

    /// The job has not started yet (or was put back in the queue).
    public var isWaiting: Bool {
        switch self {
        case .pending, .configuring, .requeued, .requeueFed, .requeueHold, .suspended, .stopped, .resizing:
            return true
        default:
            return false
        }
    }
}
