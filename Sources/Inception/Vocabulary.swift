import InceptionEngine
import InceptionHub

// What `import Inception` gives beyond this module's own types: the few engine and Hub types its API speaks in, by
// name. Neither the engine nor the Hub client is re-exported, and the engine's other declarations are the
// package's own (`package` access), so a user's completion list holds the library, not the engine (docs/design.md,
// "The public API").

/// A dense tensor of Float: a model's input (NCHW) and outputs.
public typealias Tensor = InceptionEngine.Tensor
/// The name of a model's output (`.logits`, `.features`, `.embedding`, `.auxLogits`).
public typealias OutputName = InceptionEngine.OutputName
/// The arithmetic a model's convolutions run in (fp32, bf16, int8).
public typealias Precision = InceptionEngine.Precision
/// A precision checked against this CPU: what a model is compiled with.
public typealias PrecisionRoute = InceptionEngine.PrecisionRoute
/// Why a precision cannot run here, or needs other weights.
public typealias PrecisionError = InceptionEngine.PrecisionError
/// Which convolution algorithm (Winograd, implicit GEMM) each layer may use.
public typealias ConvolutionAlgorithms = InceptionEngine.ConvolutionAlgorithms
/// Whether a model measures its layers' register tiles on this CPU (`.forThisCPU`) or takes the built-in ones.
public typealias TileTuning = InceptionEngine.TileTuning
/// A parameter value the engine cannot use (a negative variance, an overflow once folded).
public typealias ParameterError = InceptionEngine.ParameterError
/// Threads a forward pass uses by default (`Parallel.defaultThreads`: the CPUs this process may run on).
public typealias Parallel = InceptionEngine.Parallel
/// The Hugging Face Hub client that ``InceptionModel/init(pretrained:hub:)`` downloads through.
public typealias HubClient = InceptionHub.HubClient
/// Why a Hub download or cache lookup failed, in one line.
public typealias HubError = InceptionHub.HubError
/// A download's progress, as the Hub client reports it.
public typealias DownloadProgress = InceptionHub.DownloadProgress
