import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

/// A new deployment's name and record come from the records, under one lock.
@Suite struct DeploymentCreateTests {
    func record(_ name: String, job: String) -> DeploymentRecord {
        DeploymentRecord(
            name: name, cluster: "c", jobID: job, model: "m", servedModelName: "m", deployDir: "/d/\(name)",
            phase: .submitted, createdAt: Date(), apiKey: "k")
    }

    @Test func freeNamesCountUpAndExactNamesAreKept() async throws {
        let store = DeploymentStore(directory: try temporaryDirectory())
        let first = try await store.create(.free(base: "m"), cluster: "c") { record($0, job: "1") }
        let second = try await store.create(.free(base: "m"), cluster: "c") { record($0, job: "2") }
        let exact = try await store.create(.exactly("m"), cluster: "c") { record($0, job: "3") }
        #expect([first.name, second.name, exact.name] == ["m", "m-2", "m"])
        #expect(store.all(cluster: "c").map(\.jobID).sorted() == ["1", "2", "3"])
        #expect(store.name(for: .free(base: "m"), cluster: "c") == "m-3")
    }

    @Test func aFailedSubmitSavesNothingAndAnUnsavedRecordSaysWhichJob() async throws {
        let dir = try temporaryDirectory()
        let store = DeploymentStore(directory: dir)
        struct Refused: Error {}
        await #expect(throws: Refused.self) {
            _ = try await store.create(.free(base: "m"), cluster: "c") { _ in throw Refused() }
        }
        #expect(store.all(cluster: "c").isEmpty)
        // A record that cannot be written (its cluster folder is a file) names its job.
        let broken = DeploymentStore(directory: dir)
        let error = await #expect(throws: RecordNotSaved.self) {
            _ = try await broken.create(.free(base: "m"), cluster: "c") { name in
                try FileManager.default.removeItem(atPath: dir + "/c")
                _ = FileManager.default.createFile(atPath: dir + "/c", contents: Data())
                return record(name, job: "7")
            }
        }
        #expect(error?.record.jobID == "7")
    }
}
