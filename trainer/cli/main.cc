#include "trainer/cli/cli.h"

int main(int argc, char** argv) { return dsinf::trainer::cli_main(argc, argv); }
