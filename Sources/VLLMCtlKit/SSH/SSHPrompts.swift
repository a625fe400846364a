import Foundation

#if canImport(Glibc)
    import Glibc
#endif

/// Prompts for key passphrases and keyboard-interactive questions on the controlling
/// terminal. Without a terminal (scripts, CI) there are none, and such keys and prompts are
/// skipped with a message saying so.
public enum SSHTerminalPrompts {
    /// Whether stdin and stderr are a terminal.
    public static var available: Bool { isatty(STDIN_FILENO) == 1 && isatty(STDERR_FILENO) == 1 }

    /// Asks for a key file's passphrase without echo.
    public static let passphrase: @Sendable (String) -> String? = { path in
        secret("Enter passphrase for key '\(path)': ")
    }

    /// Shows the server's instruction and asks each question (echoed or not).
    public static let keyboardInteractive: @Sendable (String, [(String, Bool)]) -> [String]? = {
        instruction, prompts in
        if !instruction.isEmpty { FileHandle.standardError.write(Data((instruction + "\n").utf8)) }
        var answers: [String] = []
        for (prompt, echo) in prompts {
            if echo {
                FileHandle.standardError.write(Data(prompt.utf8))
                guard let line = readLine() else { return nil }
                answers.append(line)
            } else {
                guard let answer = secret(prompt) else { return nil }
                answers.append(answer)
            }
        }
        return answers
    }

    /// Reads a line from the terminal with echo off.
    static func secret(_ prompt: String) -> String? {
        guard let p = getpass(prompt) else { return nil }
        let value = String(cString: p)
        memset(p, 0, strlen(p))
        return value
    }
}
