import VLLMCtlCLI

/// The whole executable: hand over to the CLI library.
@main
struct Entry {
    static func main() async {
        await VLLMCtlCommand.main()
    }
}
