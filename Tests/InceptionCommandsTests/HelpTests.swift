import Foundation
import InceptionCommands
import InceptionReferences
import InceptionTestSupport
import Testing

/// Every command's `--help`, as a person reads it, against the committed text in Tests/HelpSnapshots. A change to
/// an option's wording or default shows in review as a change to these files; after a deliberate change, rewrite
/// them with `INCEPTION_UPDATE_SNAPSHOTS=1` and read the diff.
@Suite struct HelpTests {
    static let commands = ["classify", "explain", "embed", "eval", "verify", "compare", "faces", "faces detect",
                           "faces crop", "faces enroll", "faces find", "faces bench", "preprocess", "predict",
                           "summary", "bench", "bench forward", "bench cold", "bench kernels", "bench train",
                           "serve", "train",
                           "curves", "models", "init", "convert", "export", "quantize"]
    static let folder = repositoryRoot.appendingPathComponent("Tests/HelpSnapshots")

    @Test(arguments: [nil] + commands.map(Optional.some))
    func helpMatchesItsSnapshot(_ command: String?) throws {
        let text = try #require(InceptionCommand.help(command, columns: 100), "no subcommand \(command ?? "")")
        let name = command?.replacingOccurrences(of: " ", with: "-") ?? "inception"
        let file = Self.folder.appendingPathComponent("\(name).txt")
        if ProcessInfo.processInfo.environment["INCEPTION_UPDATE_SNAPSHOTS"] == "1" {
            try FileManager.default.createDirectory(at: Self.folder, withIntermediateDirectories: true)
            try Data(text.utf8).write(to: file)
            return
        }
        let expected = try String(contentsOf: file, encoding: .utf8)
        #expect(text == expected, "inception \(command ?? "") --help changed; see INCEPTION_UPDATE_SNAPSHOTS")
    }

    /// Said once: no list of the networks printed twice (ArgumentParser lists an enumeration's values itself), no
    /// option with two defaults.
    @Test(arguments: commands)
    func helpSaysEachThingOnce(_ command: String) throws {
        let text = try #require(InceptionCommand.help(command, columns: 100))
        #expect(text.components(separatedBy: "inception_resnet_v1_facenet").count <= 2)
        // Each option's paragraph starts at a line "  --name"; none says "(default:" twice.
        let options = text.components(separatedBy: "\n  -").dropFirst()
        for option in options {
            #expect(option.components(separatedBy: "(default:").count <= 2, "two defaults: --\(option)")
        }
    }

    /// The subcommands the root command lists are the ones snapshotted here.
    @Test func everySubcommandHasASnapshot() throws {
        let root = try #require(InceptionCommand.help(nil, columns: 100))
        for command in Self.commands where !command.contains(" ") { #expect(root.contains("  \(command) ")) }
        for command in Self.commands where command.contains(" ") {
            let words = command.split(separator: " ")
            let parent = try #require(InceptionCommand.help(String(words[0]), columns: 100))
            #expect(parent.contains("  \(words[1]) "), "\(words[0]) --help does not list \(words[1])")
        }
        #expect(InceptionCommand.help("no-such-command") == nil)
    }
}
