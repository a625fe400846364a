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

    @Test func aNameWithControlCharactersOrWhitespaceIsNotTagged() {
        #expect(Ownership.isTagged("vllmctl-a.b-c_d@12"))
        #expect(Ownership.isTagged("vllmctl-modèle"))  // not ASCII, but neither control nor space
        for hostile in [
            "vllmctl-sim\nvllmctl-other", "vllmctl-sim x", "vllmctl-sim\t", "vllmctl-\u{7F}",
            "vllmctl-sim\u{2028}", "vllmctl-sim\u{00A0}", "vllmctl-sim\u{85}", "vllmctl-é\u{0}",
        ] {
            #expect(!Ownership.isTagged(hostile), "\(hostile.debugDescription)")
        }
    }

    @Test func shortDurationsPadToTwoDigits() {
        #expect(SlurmTime.short(59) == "59s")
        #expect(SlurmTime.short(65) == "1m05s")
        #expect(SlurmTime.short(3600 + 7 * 60) == "1h07m")
        #expect(SlurmTime.short(2 * 86400 + 13 * 3600) == "2d13h")
    }

    @Test func theCurrentUserIsKnown() {
        #expect(!LocalHost.currentUser().isEmpty)
    }
}
