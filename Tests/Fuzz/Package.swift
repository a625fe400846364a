// swift-tools-version: 6.2
import PackageDescription

// The fuzz targets of docs/FUZZING.md, in a package of their own so that the main package
// and its CI build never compile with -sanitize=fuzzer. `make fuzz` builds it with
// `-Xswiftc -sanitize=fuzzer` (coverage in VLLMCtlKit too) and runs each target in turn.
let package = Package(
    name: "vllmctl-fuzz",
    platforms: [.macOS(.v15)],
    dependencies: [.package(name: "vllmctl", path: "../..")],
    targets: [
        .target(name: "CFuzzer"),
        // FuzzTargets.swift is the unit tests' file (a symlink).
        .executableTarget(
            name: "vllmctl-fuzz",
            dependencies: ["CFuzzer", .product(name: "VLLMCtlKit", package: "vllmctl")],
            swiftSettings: [.unsafeFlags(["-parse-as-library"])]
        ),
    ],
    swiftLanguageModes: [.v6]
)
