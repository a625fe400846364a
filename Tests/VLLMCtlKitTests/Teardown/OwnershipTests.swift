import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct OwnershipTests {
    let ownership = Ownership(user: me)

    @Test func oursNeedsBothOwnerAndTag() {
        #expect(ownership.isOurs(job("1", "vllmctl-sim")))
        #expect(!ownership.isOurs(job("2", "sleep")))  // a plain sbatch job of the same user
        #expect(!ownership.isOurs(job("3", "vllmctl-sim", user: "bob")))  // the tag, another owner
        #expect(!ownership.isOurs(job("4", "my-vllmctl-sim")))
        #expect(!Ownership(user: "").isOurs(job("5", "vllmctl-sim", user: "")))
    }

    @Test func reasonsNameTheOwnerOrTheMissingTag() {
        #expect(
            ownership.whyNotOurs(job("3", "vllmctl-sim", user: "bob"))?.contains("belongs to bob") == true)
        #expect(ownership.whyNotOurs(job("2", "sleep"))?.contains("not started by vllmctl") == true)
        #expect(ownership.whyNotOurs(job("1", "vllmctl-sim")) == nil)
    }

    @Test func theCurrentUserIsKnown() {
        #expect(!LocalHost.currentUser().isEmpty)
    }
}
