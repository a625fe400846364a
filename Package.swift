// swift-tools-version: 6.2
import PackageDescription

let strict: [SwiftSetting] = [
    .enableUpcomingFeature("ExistentialAny")
]

/// The commit this checkout is at (`+dirty` with uncommitted changes), for `vllmctl --version`.
/// `$VLLMCTL_COMMIT` wins: `make install` sets it, which also makes SwiftPM evaluate this
/// manifest again (it caches the evaluation across commits otherwise).
let commit: String = {
    if let given = Context.environment["VLLMCTL_COMMIT"], !given.isEmpty { return given }
    guard let git = Context.gitInformation else { return "unknown" }
    return String(git.currentCommit.prefix(12)) + (git.hasUncommittedChanges ? "+dirty" : "")
}()

let package = Package(
    name: "vllmctl",
    platforms: [.macOS(.v15)],
    products: [
        .executable(name: "vllmctl", targets: ["vllmctl"]),
        .library(name: "VLLMCtlKit", targets: ["VLLMCtlKit"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.8.2"),
        .package(url: "https://github.com/hummingbird-project/swift-mustache", from: "2.1.1"),
        .package(url: "https://github.com/swiftlang/swift-subprocess", from: "1.0.2"),
        .package(url: "https://github.com/jpsim/Yams", from: "6.2.2"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The balancing endpoint (Balancer/): an HTTP/1.1 proxy on NIOHTTP1's codec.
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.3"),
        // `make docs`: VLLMCtlKit's DocC documentation (a plugin only; nothing links it).
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // libcurl, loaded with dlopen on first use (its ~30 libraries would slow every run);
        // built against libcurl4-openssl-dev's headers. Also the typed wrappers for the C
        // variadics (curl_easy_setopt) that Swift cannot call.
        .target(
            name: "CCurl",
            linkerSettings: [.linkedLibrary("dl")]
        ),
        // libssh2, loaded with dlopen on first use like libcurl (linked, it and its libcrypto
        // would slow every run, and a host without it could not start vllmctl at all); built
        // against libssh2-1-dev's headers, which shim.h names.
        .target(
            name: "CLibSSH2",
            linkerSettings: [.linkedLibrary("dl")]
        ),
        // The commit vllmctl was built from, as a C string (Swift defines carry no values).
        .target(name: "CBuildInfo", cSettings: [.define("VLLMCTL_COMMIT", to: "\"\(commit)\"")]),
        // All of vllmctl's logic.
        .target(
            name: "VLLMCtlKit",
            dependencies: [
                "CBuildInfo",
                "CCurl",
                "CLibSSH2",
                .product(name: "Mustache", package: "swift-mustache"),
                .product(name: "Subprocess", package: "swift-subprocess"),
                .product(name: "Yams", package: "Yams"),
                .product(name: "Logging", package: "swift-log"),
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
        // The command line: argument parsing and printing, calling into VLLMCtlKit.
        .target(
            name: "VLLMCtlCLI",
            dependencies: [
                "VLLMCtlKit",
                .product(name: "ArgumentParser", package: "swift-argument-parser"),
            ],
            swiftSettings: strict
        ),
        // Entry point only.
        .executableTarget(name: "vllmctl", dependencies: ["VLLMCtlCLI"], swiftSettings: strict),
        // What both test targets share: fakes (a scripted cluster, HTTP, clock, terminal),
        // paths, and the local cluster's helpers (the CLI runner, its hosts, the simulator).
        // Not in any product; it lives under Tests/. Its `@testable import VLLMCtlKit` needs a
        // debug build (testability), as the test targets' do; release builds name their product
        // (`--product vllmctl`, Makefile), since a plain `swift build -c release` would build it too.
        .target(
            name: "TestSupport",
            dependencies: ["VLLMCtlKit"],
            path: "Tests/TestSupport",
            swiftSettings: strict
        ),
        .testTarget(
            name: "VLLMCtlKitTests",
            dependencies: [
                "VLLMCtlKit", "VLLMCtlCLI", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            resources: [.copy("Fixtures")],
            swiftSettings: strict
        ),
        .testTarget(
            name: "IntegrationTests",
            dependencies: [
                "VLLMCtlKit", "VLLMCtlCLI", "TestSupport",
                .product(name: "NIOCore", package: "swift-nio"),
                .product(name: "NIOPosix", package: "swift-nio"),
                .product(name: "NIOHTTP1", package: "swift-nio"),
            ],
            swiftSettings: strict
        ),
    ],
    swiftLanguageModes: [.v6]
)
