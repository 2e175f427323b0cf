import Foundation
import InceptionReferences
import Testing

/// `bench`'s modes are subcommands (`bench forward`, the default, `cold`, `kernels`, `train`); the flags that chose
/// them before (`--cold`, `--kernels`, `--train`) still run the same subcommand, wherever they stand among the
/// options. (`bench kernels --save` runs in ConformanceTests.)
@Suite struct BenchCommandTests {
    static let facenet = ["--model", "inception_resnet_v1_facenet", "--input-size", "160", "--json"]
    static let quiet = ["INCEPTION_TUNE": "0"]

    /// The JSON a bench command printed, as a dictionary (the test fails on anything else).
    static func report(_ arguments: [String]) throws -> [String: Any] {
        let result = try runInception(arguments, environment: quiet)
        #expect(result.status == 0, "\(arguments): \(result.stderr)")
        let object = try JSONSerialization.jsonObject(with: Data(result.stdout.utf8))
        return try #require(object as? [String: Any], "\(arguments): \(result.stdout)")
    }

    @Test func theOldModeFlagsRunTheirSubcommands() throws {
        let cold = try Self.report(["bench", "cold"] + Self.facenet)
        let aliased = try Self.report(["bench"] + Self.facenet + ["--cold"])
        #expect(Set(cold.keys) == Set(aliased.keys) && cold["cold_start_ms"] is Double)
        #expect(cold["model"] as? String == "inception_resnet_v1_facenet" && aliased["weights"] as? String == "random")

        let steps = ["--batch", "2", "--runs", "1", "--warmup", "0"]
        let train = try Self.report(["bench", "train"] + Self.facenet + steps)
        let trainAliased = try Self.report(["bench", "--train"] + Self.facenet + steps)
        #expect(train["mode"] as? String == "train" && trainAliased["mode"] as? String == "train")
        #expect(Set(train.keys) == Set(trainAliased.keys) && train["batch"] as? Int == 2)
    }

    @Test func theForwardPassIsTheDefault() throws {
        let once = ["--runs", "1", "--warmup", "0"]
        let bare = try Self.report(["bench"] + Self.facenet + once)
        let named = try Self.report(["bench", "forward"] + Self.facenet + once)
        #expect(Set(bare.keys) == Set(named.keys) && bare["median_ms"] is Double && bare["input_size"] as? Int == 160)
    }

    /// A mode refuses, in one line, what it never used (they were accepted and ignored when the modes were flags);
    /// `--help` after an old flag is that subcommand's help.
    @Test func eachModeTakesItsOwnOptions() throws {
        let refused = try runInception(["bench", "--kernels", "--precision", "int8"], environment: Self.quiet)
        #expect(refused.status == 1 && refused.stderr == "Error: Unknown option '--precision'\n", "\(refused.stderr)")
        let auxiliary = try runInception(["bench", "train", "--model", "inception_resnet_v1", "--aux-head"])
        #expect(auxiliary.status == 1 && auxiliary.stderr == "Error: inception_resnet_v1 has no auxiliary head\n")
        let help = try runInception(["bench", "--train", "--help"])
        #expect(help.status == 0 && help.stdout.contains("USAGE: inception bench train"), "\(help.stdout)")
    }
}
