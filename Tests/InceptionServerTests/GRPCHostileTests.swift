import Foundation
import InceptionReferences
import Testing

/// The gRPC port under attack (issue #41), each case of `scripts/grpc_attacks.py` — raw HTTP/2 frames through
/// python-h2 against a live `inception serve` of its own — as a test of its own. At a383341 a negative
/// `grpc-timeout` ended the process (SIGILL), stalled messages grew it to 2.65 GB, a message of 8,000,000 empty inputs
/// took 15 s of CPU and 1 GB, SIGTERM answered calls CANCELLED, a 1 MB model name came back in the status, and a 17th
/// stream ended its connection; the script's docstring says what each case now requires.
@Suite struct GRPCHostileTests {
    static let cases = ["negative-timeout", "stalled", "amplification", "echo", "stream-limit", "frames", "drain",
                        "drain-deadline"]

    @Test(arguments: cases) func attack(_ name: String) throws {
        let script = repositoryRoot.appendingPathComponent("scripts/grpc_attacks.py").path
        let result = try run(venvPython(), [script, name])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.contains("grpc_attacks: \(name): ok"), "\(result.stdout)")
    }
}
