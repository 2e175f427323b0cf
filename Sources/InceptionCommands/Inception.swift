import ArgumentParser
import Foundation
import InceptionTraining
import Inception
import InceptionEngine
import InceptionIO

/// The `inception` command and its subcommands; the executable calls `launch()`.
public struct InceptionCommand: AsyncParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "inception",
        abstract: "Inception-v4 and Inception-ResNet (arXiv 1602.07261) on the CPU, in Swift.",
        version: InceptionCommand.version,
        subcommands: [Classify.self, Explain.self, Embed.self, Evaluate.self, Verify.self, Compare.self, Faces.self,
                      Preprocess.self, Predict.self, Summary.self, Bench.self, Serve.self, Train.self, Curves.self,
                      Models.self, Init.self, Convert.self, Export.self, Quantize.self])

    /// The package's version, as `inception --version` prints it.
    public static let version = InceptionPackage.version

    public init() {}

    /// Parses the process's arguments and runs the command. A level forced with INCEPTION_ISA that this CPU cannot
    /// run is refused before anything else (one line).
    public static func launch() async {
        if let problem = Kernels.environmentProblem ?? AMX.environmentProblem {
            FileHandle.standardError.write(Data("error: \(problem)\n".utf8))
            Foundation.exit(1)
        }
        // A reader that goes away (`| head`, a FIFO closed early) is an error the output writer reports in one
        // line, not a signal that ends the process.
        signal(SIGPIPE, SIG_IGN)
        // Interrupted, a command leaves no partial output file behind.
        PartialFiles.removeOnSignals()
        DiagnosticLines.bootstrap()
        await run(Array(CommandLine.arguments.dropFirst()))
    }

    /// Parses `arguments` and runs the command. Every refusal is one line, `Error: …`, exit status 1 — the
    /// parser's own (an unknown value, a missing one) included, without the usage text it would add; `--help` and
    /// `--version` print as ArgumentParser prints them.
    static func run(_ arguments: [String]) async {
        do {
            var command = try parseAsRoot(joiningNegativeNumbers(Bench.modeAliases(arguments)))
            if var command = command as? AsyncParsableCommand { try await command.run() } else { try command.run() }
        } catch let code as ExitCode {
            Foundation.exit(code.rawValue)  // reported already (`reported`)
        } catch {
            guard exitCode(for: error) != .success else { exit(withError: error) }
            let line = message(for: error).split(separator: "\n").first.map(String.init) ?? "\(error)"
            FileHandle.standardError.write(Data("Error: \(plainFlags(line))\n".utf8))
            Foundation.exit(1)
        }
    }

    /// `--flag -1` read as the flag's value, as a person means it (ArgumentParser takes `-1` for an option):
    /// `--flag=-1`.
    static func joiningNegativeNumbers(_ arguments: [String]) -> [String] {
        var joined: [String] = []
        for argument in arguments {
            if let last = joined.last, last.hasPrefix("--"), !last.contains("="), last != "--",
               argument.count > 1, argument.hasPrefix("-"), Double(argument) != nil {
                joined[joined.count - 1] = last + "=" + argument
            } else {
                joined.append(argument)
            }
        }
        return joined
    }

    /// The parser's wording in the project's: `'--crops <crops>'` is `--crops`.
    static func plainFlags(_ line: String) -> String {
        line.replacingOccurrences(of: #"'(--?[A-Za-z0-9-]+) <[^>]*>'"#, with: "$1", options: .regularExpression)
    }

    /// The help text of `inception` (nil) or of one of its subcommands (`faces detect` for a nested one), as
    /// `--help` prints it at that width.
    public static func help(_ subcommand: String? = nil, columns: Int = 100) -> String? {
        guard let subcommand else { return helpMessage(columns: columns) }
        var type: ParsableCommand.Type? = self
        for name in subcommand.split(separator: " ") {
            type = type?.configuration.subcommands.first { $0._commandName == name }
        }
        return type.map { helpMessage(for: $0, columns: columns) }
    }
}

/// Runs a command body; any error becomes one line on standard error and exit status 1.
func reportingErrors(_ body: () throws -> Void) throws {
    do { try body() } catch { throw reported(error) }
}

/// An error as the command line reports it: one line on standard error, with the option that answers it where
/// there is one, and exit status 1 (an exit code passes through).
func reported(_ error: any Error) -> any Error {
    if error is ExitCode { return error }
    FileHandle.standardError.write(Data("error: \(errorLine(error))\n".utf8))
    return ExitCode(1)
}

/// What `reported` prints after `error: `.
func errorLine(_ error: any Error) -> String {
    oneLine(error) + (commandLineHint(for: error).map { " (\($0))" } ?? "")
}

/// What the command line adds to a library error: the option that answers it. The library's messages name no
/// option, since a library user has none.
func commandLineHint(for error: any Error) -> String? {
    switch error {
    case let WeightsError.otherModel(_, other): return "use --model \(other)"
    case HubError.noReleasedWeights: return "pass --weights FILE"
    case HubError.network, HubError.offlineNotCached, HubError.notFound, HubError.httpStatus:
        return "to run without the Hub: pass --weights FILE (safetensors or a PyTorch .pt/.pth/.bin; `inception "
            + "init` writes a random one), set HF_ENDPOINT to a reachable mirror, or put the weights in the Hub "
            + "cache, \(HubClient().cacheDirectory.path)"
    case let error as MemoryError:
        return error.what.hasPrefix("a checkpoint") ? "lower --classes" : "lower --batch or --input-size"
    case TrainingError.nonFiniteLoss: return "--skip-nonfinite skips such batches"
    case TrainingError.diverged: return "lower --lr, or --clip-norm the gradients"
    case TrainingError.runExists: return "--resume continues it, --overwrite starts a new one there"
    case PrecisionError.needsQuantizedWeights:
        return "`inception quantize --calibration DIR` makes one; this checkpoint runs with --precision fp32 or bf16"
    default: return nil
    }
}

/// An error as one line in the project's words: a Foundation or decoder error that escaped its own wording is put
/// in words here, newlines become spaces, and a line of more than 300 characters keeps its start and its end.
func oneLine(_ error: any Error) -> String {
    var text: String
    switch error {
    case let error as CocoaError:
        let path = error.filePath ?? error.url?.path ?? "a file"
        let code = (error.underlying as? POSIXError)?.code.rawValue
        text = "cannot use \(path): " + (code.map { FileOutput.reason($0) } ?? "the file system refused it")
    case let error as DecodingError:
        let context: DecodingError.Context? = switch error {
        case let .dataCorrupted(c), let .keyNotFound(_, c), let .typeMismatch(_, c), let .valueNotFound(_, c): c
        @unknown default: nil
        }
        let field = context?.codingPath.map { $0.intValue.map(String.init) ?? $0.stringValue }.joined(separator: ".")
        text = "malformed JSON" + (field.map { $0.isEmpty ? "" : " at \($0)" } ?? "")
    case let error as EncodingError:
        if case let .invalidValue(value, _) = error { text = "cannot write \(value) as JSON" } else {
            text = "cannot write JSON"
        }
    default:
        text = "\(error)"
    }
    text = text.replacingOccurrences(of: "\n", with: " ")
    return text.count <= 300 ? text : "\(text.prefix(240)) … \(text.suffix(50))"
}

func printJSON(_ object: Any) throws {
    let data = try JSON.data(object, pretty: true)
    print(String(decoding: data, as: UTF8.self))
}

/// A command-line problem, reported as its one line: from `validate()` (a flag's value refused before any work)
/// ArgumentParser prints it as `Error: …`, from a command's body `reportingErrors` as `error: …`; exit status 1
/// either way, without the usage text the parser's own errors add.
struct CLIError: Error, CustomStringConvertible {
    let description: String
    init(_ description: String) { self.description = description }
}
