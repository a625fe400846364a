import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// Issue 12 item 12: a deployment directory is made new, with its mode from the start.
@Suite struct NewDirectoryTests {
    @Test func aNewDirectoryIsExclusiveAndPrivateFromTheStart() async throws {
        let root = try temporaryDirectory()
        let host = LocalHost()
        let old = umask(0o022)
        defer { umask(old) }
        try await host.makeNewDirectory(root + "/work/dep-1", mode: 0o700)
        var st = stat()
        #expect(stat(root + "/work/dep-1", &st) == 0 && st.st_mode & 0o777 == 0o700)
        // Existing: refused, left alone.
        await #expect(throws: VLLMCtlError.self) {
            try await host.makeNewDirectory(root + "/work/dep-1", mode: 0o700)
        }
        // A planted symlink (to a directory someone else controls) is not followed.
        try FileManager.default.createDirectory(atPath: root + "/theirs", withIntermediateDirectories: true)
        #expect(symlink(root + "/theirs", root + "/work/dep-2") == 0)
        await #expect(throws: VLLMCtlError.self) {
            try await host.makeNewDirectory(root + "/work/dep-2", mode: 0o700)
        }
    }

    /// Issue 12 item 8: the job probes the address its server binds.
    @Test func theJobProbesTheBindAddress() throws {
        #expect(DeployPlan.probeHost(bind: nil) == "127.0.0.1")
        #expect(DeployPlan.probeHost(bind: "0.0.0.0") == "127.0.0.1")
        #expect(DeployPlan.probeHost(bind: "::") == "127.0.0.1")
        #expect(DeployPlan.probeHost(bind: "10.1.2.3") == "10.1.2.3")
        #expect(DeployPlan.probeHost(bind: "[fd00::5]") == "fd00::5")
        var s = DeployPlanTests.settings()
        s.bindHost = "10.1.2.3"
        s.readyTimeout = 90
        let plan = try DeployPlanTests.plan(s)
        #expect(plan.renderContext["probe_host"] as? String == "10.1.2.3")
        #expect(plan.renderContext["ready_timeout"] as? String == "90")
    }
}
