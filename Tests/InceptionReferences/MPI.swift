import Foundation
import Testing

/// Open MPI's `mpirun` (which the test command installs) launching the `inception` executable.
package enum MPI {
    /// `mpirun -np ranks inception arguments…`: (exit status, standard output, standard error).
    package static func run(_ ranks: Int, _ arguments: [String], environment: [String: String] = [:]) throws
        -> (status: Int32, stdout: String, stderr: String)
    {
        try InceptionReferences.run(try mpirun(), launch(ranks) + [inceptionExecutable().path] + arguments,
                                    environment: environment)
    }

    package static func mpirun() throws -> URL {
        let mpirun = URL(fileURLWithPath: "/usr/bin/mpirun")
        try #require(FileManager.default.isExecutableFile(atPath: mpirun.path),
                     "mpirun is missing: scripts/install_dependencies.sh --tests installs Open MPI")
        return mpirun
    }

    /// mpirun's arguments for `ranks` ranks on this machine (as root too).
    package static func launch(_ ranks: Int) -> [String] {
        (geteuid() == 0 ? ["--allow-run-as-root"] : []) + ["--oversubscribe", "-np", "\(ranks)"]
    }

    /// The pid of the inception process of MPI rank `rank` whose command line mentions `arguments`.
    package static func processOfRank(_ rank: Int, arguments: String) -> pid_t? {
        let pids = (try? FileManager.default.contentsOfDirectory(atPath: "/proc"))?.compactMap { pid_t($0) } ?? []
        for pid in pids {
            let file = { (name: String) in try? Data(contentsOf: URL(fileURLWithPath: "/proc/\(pid)/\(name)")) }
            guard let command = file("cmdline"), String(decoding: command, as: UTF8.self).contains(arguments),
                  let environment = file("environ") else { continue }
            let variables = environment.split(separator: 0).map { String(decoding: $0, as: UTF8.self) }
            if variables.contains("OMPI_COMM_WORLD_RANK=\(rank)") { return pid }
        }
        return nil
    }
}
