import CFuzzer
import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// The target `$FUZZ_TARGET` names, chosen once before the first input.
nonisolated(unsafe) private var target = ""

@_cdecl("LLVMFuzzerInitialize")
public func fuzzerInitialize(
    _ argc: UnsafeMutablePointer<CInt>,
    _ argv: UnsafeMutablePointer<UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?>
) -> CInt {
    let name = ProcessInfo.processInfo.environment["FUZZ_TARGET"] ?? ""
    guard FuzzTargets.names.contains(name) else {
        let names = FuzzTargets.names.joined(separator: " ")
        FileHandle.standardError.write(Data("Set FUZZ_TARGET to one of: \(names)\n".utf8))
        exit(2)
    }
    target = name
    return 0
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzerTestOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTargets.run(target, data.map { Data(bytes: $0, count: size) } ?? Data())
    return 0
}

/// The entry point (SwiftPM links `main` to it): libFuzzer's driver, with libFuzzer's flags.
@_cdecl("vllmctl_fuzz_main")
public func fuzzMain(_ argc: CInt, _ argv: UnsafeMutablePointer<UnsafeMutablePointer<CChar>?>?) -> CInt {
    var count = argc
    var arguments = argv
    return LLVMFuzzerRunDriver(&count, &arguments) { data, size in fuzzerTestOneInput(data, size) }
}
