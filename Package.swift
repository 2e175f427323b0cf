// swift-tools-version: 6.2
import PackageDescription

// The hot loops (InceptionKernels, generic) are compiled once per x86-64 level, each in a module of its own with
// that level's code generation; the engine picks one at start from CPUID. Nothing else carries a CPU flag, so the
// binary runs on every x86-64. The manifest is compiled for the host, so this checks the architecture we build on.
#if arch(x86_64)
let avx2Flags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "haswell"])]
let avx512Flags: [SwiftSetting] = [.unsafeFlags(["-target-cpu", "skylake-avx512"])]
#else
let avx2Flags: [SwiftSetting] = []
let avx512Flags: [SwiftSetting] = []
#endif

let package = Package(
    name: "swift-inception",
    platforms: [.macOS(.v15)],
    products: [
        .library(name: "Inception", targets: ["Inception", "InceptionTraining", "InceptionONNX"]),
        .executable(name: "inception", targets: ["InceptionCLI"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        // The server: HTTP/1.1 on SwiftNIO, graceful shutdown through swift-service-lifecycle; Prometheus text format.
        .package(url: "https://github.com/hummingbird-project/hummingbird", from: "2.28.1", traits: []),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
        .package(url: "https://github.com/swift-server/swift-service-lifecycle", from: "2.13.0"),
        .package(url: "https://github.com/apple/swift-nio", from: "2.101.2"),
        .package(url: "https://github.com/apple/swift-http-types", from: "1.8.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.16.2"),
        // The Open Inference Protocol's gRPC half: grpc-swift 2 over HTTP/2 on NIO; the service's messages and
        // server side are generated once (scripts/generate_grpc_service.sh) and committed. The transport's core
        // comes through its TransportServices product (empty on Linux): its Posix product would also build TLS
        // (BoringSSL, swift-certificates), which a plaintext listener of our own (GRPCListener) does without.
        .package(url: "https://github.com/grpc/grpc-swift-2", from: "2.4.3"),
        .package(url: "https://github.com/grpc/grpc-swift-nio-transport", from: "2.9.2"),
        .package(url: "https://github.com/grpc/grpc-swift-protobuf", from: "2.4.1"),
        // HTTP/2 frames and headers, for the gate in front of grpc-swift on each stream (GRPCStreamGate).
        .package(url: "https://github.com/apple/swift-nio-http2", from: "1.46.0"),
        // ONNX export: the ONNX schema's messages, generated once (scripts/generate_onnx_proto.sh) and committed.
        .package(url: "https://github.com/apple/swift-protobuf", from: "1.39.0"),
        // `swift package generate-documentation --target Inception`: the DocC catalog in Sources/Inception.
        .package(url: "https://github.com/swiftlang/swift-docc-plugin", from: "1.5.0"),
    ],
    targets: [
        // The hot loops, generic over an instruction-set level, and one module per level that compiles them.
        .target(name: "InceptionKernels"),
        .target(name: "InceptionKernelsBaseline", dependencies: ["InceptionKernels"]),
        .target(name: "InceptionKernelsAVX2", dependencies: ["InceptionKernels"], swiftSettings: avx2Flags),
        .target(name: "InceptionKernelsAVX512", dependencies: ["InceptionKernels"], swiftSettings: avx512Flags),
        // libc calls Swift's Glibc module does not export (malloc_trim, mallopt), and CPUID.
        .target(name: "CInceptionSystem"),
        // The bf16 and int8 micro-kernels: VDPBF16PS, VPDPBUSD and VPMADDWD, which Swift cannot express (each
        // function compiled for its own instructions; the Swift references are in InceptionKernels); and the AMX
        // tile layer, the instructions beside their exact emulator (amx.c).
        .target(name: "CInceptionReduced", dependencies: ["CInceptionSystem"]),
        // Tensors, convolution, pooling, the graph and its executor; picks the kernels' level. Knows no network.
        .target(name: "InceptionEngine", dependencies: [
            "InceptionKernels", "InceptionKernelsBaseline", "InceptionKernelsAVX2", "InceptionKernelsAVX512",
            "CInceptionSystem", "CInceptionReduced", .product(name: "Logging", package: "swift-log"),
        ]),
        // libjpeg-turbo and libpng from the system (Debian: libjpeg62-turbo-dev, libpng-dev).
        .systemLibrary(name: "CJPEG", pkgConfig: "libjpeg",
                       providers: [.apt(["libjpeg62-turbo-dev"]), .brew(["jpeg-turbo"])]),
        .systemLibrary(name: "CPNG", pkgConfig: "libpng", providers: [.apt(["libpng-dev"]), .brew(["libpng"])]),
        // The face gallery (`inception faces enroll|find`): SQLite's C API (in macOS's SDK; Debian's libsqlite3-dev).
        .systemLibrary(name: "CSQLite", pkgConfig: "sqlite3", providers: [.apt(["libsqlite3-dev"])]),
        // Keeps libjpeg's and libpng's longjmp error handling inside C.
        .target(name: "CImageDecode", dependencies: ["CJPEG", "CPNG"]),
        // safetensors, npy and image readers/writers; Pillow-exact resizing.
        .target(name: "InceptionIO", dependencies: ["CImageDecode"]),
        // The three networks of arXiv 1602.07261 and their released variants, as graphs.
        .target(name: "InceptionModels", dependencies: ["InceptionEngine"]),
        // The Hugging Face Hub client: huggingface_hub's cache layout, checked downloads. Knows no network.
        .target(name: "InceptionHub"),
        // The public API: models by name, weights loading with checkpoint key maps, inference, evaluation.
        .target(name: "Inception", dependencies: ["InceptionEngine", "InceptionIO", "InceptionModels", "InceptionHub",
                                                  "CSQLite"]),
        // Open MPI, loaded at run time (dlopen) for data-parallel training: no build dependency on MPI.
        .target(name: "CInceptionMPI", linkerSettings: [.linkedLibrary("dl", .when(platforms: [.linux]))]),
        // Training: the paper's recipe, optimisers, augmentation, checkpoints timm loads, metrics and curves; data
        // parallelism over MPI.
        .target(name: "InceptionTraining",
                dependencies: ["Inception", "InceptionEngine", "InceptionIO", "CInceptionMPI"]),
        // `inception export`: the inference graph as ONNX (onnx.pb.swift is generated from onnx.proto).
        .target(name: "InceptionONNX", dependencies: [
            "Inception", "InceptionEngine", "InceptionIO", .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        // `inception serve`: HTTP and gRPC endpoints, dynamic batching, back-pressure, metrics.
        .target(name: "InceptionServer", dependencies: [
            "Inception", "InceptionEngine", "InceptionIO", "CInceptionSystem",
            .product(name: "Hummingbird", package: "hummingbird"),
            .product(name: "Prometheus", package: "swift-prometheus"),
            .product(name: "ServiceLifecycle", package: "swift-service-lifecycle"),
            .product(name: "NIOCore", package: "swift-nio"),
            .product(name: "HTTPTypes", package: "swift-http-types"),
            .product(name: "Logging", package: "swift-log"),
            .product(name: "GRPCCore", package: "grpc-swift-2"),
            .product(name: "GRPCNIOTransportHTTP2TransportServices", package: "grpc-swift-nio-transport"),
            .product(name: "NIOPosix", package: "swift-nio"),
            .product(name: "NIOHTTP2", package: "swift-nio-http2"),
            .product(name: "NIOHPACK", package: "swift-nio-http2"),
            .product(name: "GRPCProtobuf", package: "grpc-swift-protobuf"),
            .product(name: "SwiftProtobuf", package: "swift-protobuf"),
        ]),
        // The `inception` commands, as a library the tests call; the executable is only their entry point.
        .target(name: "InceptionCommands", dependencies: [
            "Inception", "InceptionEngine", "InceptionIO", "InceptionTraining", "InceptionServer", "InceptionONNX",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Logging", package: "swift-log"),
        ]),
        .executableTarget(name: "InceptionCLI", dependencies: ["InceptionCommands"]),
        // What the test targets share: the measures of closeness (engine only, for the fast lane), and the reference
        // files, the photos and the servers (everything above the engine).
        .target(name: "InceptionTestSupport", dependencies: ["InceptionEngine"], path: "Tests/InceptionTestSupport"),
        .target(name: "InceptionReferences", dependencies: ["Inception", "InceptionEngine", "InceptionIO",
                                                             "InceptionServer", "InceptionTestSupport"],
                path: "Tests/InceptionReferences"),
        // One test target per module. Engine and IO tests need neither the Python references nor a server (the
        // fast lane, README); the others check against the references and run the command line and the server.
        .testTarget(name: "InceptionEngineTests",
                    dependencies: ["InceptionEngine", "InceptionKernels", "CInceptionReduced", "InceptionTestSupport"]),
        .testTarget(name: "InceptionIOTests", dependencies: ["InceptionIO", "InceptionTestSupport"]),
        .testTarget(name: "InceptionTests", dependencies: [
            "Inception", "InceptionEngine", "InceptionIO", "InceptionModels", "InceptionONNX", "InceptionTraining",
            "InceptionReferences", "InceptionTestSupport",
        ]),
        .testTarget(name: "InceptionTrainingTests",
                    dependencies: ["Inception", "InceptionEngine", "InceptionIO", "InceptionTraining",
                                   "InceptionReferences", "InceptionTestSupport"]),
        .testTarget(name: "InceptionONNXTests",
                    dependencies: ["Inception", "InceptionIO", "InceptionONNX", "InceptionReferences",
                                   "InceptionTestSupport"]),
        .testTarget(name: "InceptionServerTests",
                    dependencies: ["Inception", "InceptionEngine", "InceptionIO", "InceptionServer",
                                   "InceptionReferences", "InceptionTestSupport"]),
        .testTarget(name: "InceptionCommandsTests",
                    dependencies: ["Inception", "InceptionIO", "InceptionCommands", "InceptionReferences",
                                   "InceptionTestSupport"]),
    ]
)
