import Foundation
import VLLMCtlCLI

/// The whole executable: hand over to the CLI library.
@main
struct Entry {
    static func main() async {
        await VLLMCtlCommand.main()
        // Done (a failure has exited already): exit from here rather than returning to the
        // runtime's main-queue drain, which starts a thread only to exit (~1 ms a run).
        exit(0)
    }
}
