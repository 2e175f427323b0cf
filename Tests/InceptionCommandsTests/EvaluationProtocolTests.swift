import Foundation
import Inception
import InceptionIO
import InceptionReferences
import InceptionTestSupport
import Testing

/// The paper's evaluation protocols against an implementation written in the test from their definitions
/// (`scripts/crop_check.py`, Pillow and numpy): every view of the 1-, 10-, 12- and 144-crop protocols on portrait,
/// landscape, square, small and thin images, for Inception-v4 and the face model, bitwise equal to `inception
/// preprocess --crops`; and `inception eval --crops --json` — single networks with probabilities or logits
/// averaged, and an ensemble of Inception-v4 and Inception-ResNet-v2 — equal, image by image, to numpy's averages
/// over `inception predict`'s logits on the exported views, with the top-1 and top-5 errors on labels that mix hits
/// and misses.
@Suite struct EvaluationProtocolTests {
    @Test func cropsAndEnsemblesAgreeWithNumpy() throws {
        let result = try run(venvPython(), [
            repositoryRoot.appendingPathComponent("scripts/crop_check.py").path,
            "--inception", inceptionExecutable().path, "--photo", try Photos.imageURL("chelsea_baseline.jpg").path,
            "--weights-v4", try References.weights(.inceptionV4).path,
            "--weights-ir2", try References.weights(.inceptionResNetV2).path,
        ])
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.hasSuffix("crop_check: every check passed\n"))
        #expect(result.stdout.contains("inception_v4, 144 crop(s), portrait, landscape, square, small, thin: 720"))
    }

    /// A 1 × 100 000 PNG once asked the single crop for 35 GB; every protocol computes only its views' pixels (the
    /// whole resize at 144-crop's largest scale would be 47 million pixels long), on its thread in well under the
    /// bound's 20 s of CPU.
    @Test func thinImagesCostOnlyTheirViews() throws {
        for name in ["thin_1x100000.png", "thin_100000x1.png"] {
            let image = try RGBImage(decoding: try References.attack(name))
            var clock = timespec()
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &clock)
            let start = Double(clock.tv_sec) + Double(clock.tv_nsec) * 1e-9
            for crops in CropProtocol.allCases {
                let views = Preprocessing.inceptionV4.views(image, crops: crops)
                #expect(views.count == crops.rawValue && views.allSatisfy { ($0.image.width, $0.image.height) ==
                    (299, 299) }, "\(name), \(crops.rawValue) crops")
            }
            clock_gettime(CLOCK_THREAD_CPUTIME_ID, &clock)
            let cpu = Double(clock.tv_sec) + Double(clock.tv_nsec) * 1e-9 - start
            #expect(cpu < 20, "\(name): \(cpu) s of CPU")
        }
    }

    /// Face verification against computations written in the test (`scripts/verify_check.py`): on identities made
    /// of augmented crops of the test photos and a generated 10-fold pairs file, every pair's distance equals
    /// numpy's on `inception embed`'s embeddings; each fold's accuracy, threshold, VAL and FAR equal a numpy
    /// re-implementation of facenet's protocol on the same distances; the ROC and its AUC equal scikit-learn's; the
    /// simple pairs format gives the same; `compare` gives numpy's distance and decision.
    @Test func verificationAgreesWithNumpyAndScikitLearn() throws {
        let photos = try ["astronaut_gray.jpg", "chelsea_baseline.jpg", "coffee_progressive.jpg", "motorcycle_cmyk.jpg",
                          "rocket.jpg"].map { try Photos.imageURL($0).path }
        let result = try run(venvPython(), [
            repositoryRoot.appendingPathComponent("scripts/verify_check.py").path,
            "--inception", inceptionExecutable().path,
            "--weights", try References.weights(.inceptionResNetV1FaceNet).path,
        ] + photos)
        #expect(result.status == 0, "\(result.stdout)\(result.stderr)")
        #expect(result.stdout.hasSuffix("verify_check: every check passed\n"))
    }

    /// A pairs file that is not one is named by its line; too few pairs, or pairs of one kind, are named too.
    @Test func malformedPairsAreNamed() throws {
        #expect(throws: VerificationError.badLine(2, "alice 1")) {
            try PairsFile.parse("10 300\nalice 1\n", images: "/faces")
        }
        #expect(throws: VerificationError.badLine(1, "bob x 2")) { try PairsFile.parse("bob x 2\n", images: "/f") }
        let pairs = try PairsFile.parse("alice 1 2\nalice 1 bob 3\n", images: "/faces")
        #expect(pairs == [FacePair(first: "/faces/alice/alice_0001.jpg", second: "/faces/alice/alice_0002.jpg",
                                   same: true),
                          FacePair(first: "/faces/alice/alice_0001.jpg", second: "/faces/bob/bob_0003.jpg",
                                   same: false)])
        #expect(throws: VerificationError.tooFewPairs(2)) {
            try Verification(distances: [0.1, 2], same: [true, false])
        }
        #expect(throws: VerificationError.oneKindOnly) {
            try Verification(distances: Array(repeating: 1, count: 10), same: Array(repeating: true, count: 10))
        }
    }
}
