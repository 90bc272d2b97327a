// The dsinf command line: parses arguments, runs a job, maps its status to
// the exit code (0 ok, 2 bad input: config, data, checkpoint; 1 internal failure).
#pragma once

namespace dsinf::trainer {

int cli_main(int argc, char** argv);

}  // namespace dsinf::trainer
