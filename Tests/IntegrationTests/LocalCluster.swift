import TestSupport
import Testing

/// Every suite that submits or cancels jobs on the local cluster nests in here
/// (`extension LocalCluster { @Suite struct … }`), so they run one after another: a teardown
/// test never races a deploy test's jobs.
@Suite(.serialized) struct LocalCluster {}
