import Foundation
import TestSupport
import Testing

@testable import VLLMCtlKit

@Suite struct TeardownDurationTests {
    @Test func unitsAndSlurmForms() throws {
        let cases: [(String, TimeInterval)] = [
            ("90s", 90), ("10m", 600), ("2h", 7200), ("1d", 86400), ("1h30m", 5400), ("1.5h", 5400),
            ("0s", 0),
            ("02:00:00", 7200), ("5:30", 330), ("1-00:00:00", 86400), ("1-02", 93600), ("1-02:30", 95400),
            (" 10M ", 600),
        ]
        for (text, seconds) in cases {
            #expect(try DurationText.parse(text) == seconds, "\(text)")
        }
    }

    @Test func nonsenseIsRefusedWithTheAcceptedForms() {
        for text in ["", "10", "ten minutes", "10x", "m", "1:2:3:4", "a:b", "1h30", "-5m"] {
            let error = #expect(throws: VLLMCtlError.self, "\(text)") { try DurationText.parse(text) }
            #expect("\(error.map { "\($0)" } ?? "")".contains("HH:MM:SS"), "\(text)")
        }
    }

    /// Out-of-range numbers are errors, never a trap (issue 12 item 13).
    @Test func hugeDurationsAreErrorsNotCrashes() {
        for text in ["99999999999999999999:00", "999999999999d", "1-99999999999:00:00", "4000000000h"] {
            #expect(throws: VLLMCtlError.self, "\(text)") { try DurationText.parse(text) }
        }
        #expect(DurationText.slurm("99999999999999999999:00") == nil)
        #expect(DurationText.format(1e300) == DurationText.format(DurationText.longest * 10))
        #expect(DurationText.format(.nan) == "0s")
    }

    @Test func squeueElapsed() {
        #expect(DurationText.slurm("0:05") == 5)
        #expect(DurationText.slurm("12:34") == 754)
        #expect(DurationText.slurm("1:02:03") == 3723)
        #expect(DurationText.slurm("2-03:04:05") == 183_845)
        #expect(DurationText.slurm("INVALID") == nil)
        #expect(DurationText.slurm("UNLIMITED") == nil)
        #expect(DurationText.slurm("") == nil)
    }

    @Test func shortForm() {
        #expect(DurationText.format(45) == "45s")
        #expect(DurationText.format(600) == "10m")
        #expect(DurationText.format(754) == "12m34s")
        #expect(DurationText.format(3900) == "1h05m")
        #expect(DurationText.format(2 * 86400 + 3 * 3600) == "2d03h")
    }
}
