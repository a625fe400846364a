import Foundation
import VLLMCtlCLI

/// The whole executable: hand over to the CLI library.
@main
struct Entry {
    static func main() async {
        await VLLMCtlCommand.start()
        // Done (a failure has exited already). Streams are flushed, then the process ends at
        // once: returning would start a thread for the runtime's main-queue drain only to exit,
        // and exit(3) runs swift-subprocess's handlers, which wake and join its worker threads
        // one by one (~1.5 ms a run together, a tenth of what `status` adds to its squeue).
        // Nothing of vllmctl's waits for an exit handler.
        fflush(nil)
        _exit(0)
    }
}
