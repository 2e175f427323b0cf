import Foundation

/// Starts reading the FIFO at `path` to its end on another thread (a writer's open blocks until a reader opens it);
/// the returned function waits for the reader and gives what it read.
public func readFIFO(_ path: String) -> () -> Data {
    nonisolated(unsafe) var received = Data()
    let done = DispatchSemaphore(value: 0)
    DispatchQueue.global().async {
        received = FileHandle(forReadingAtPath: path)?.readDataToEndOfFile() ?? Data()
        done.signal()
    }
    return {
        done.wait()
        return received
    }
}
