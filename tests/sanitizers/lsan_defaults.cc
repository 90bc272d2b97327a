// LeakSanitizer's defaults, built into every executable of a sanitizer build
// (top-level CMakeLists.txt). The runtime reads them before LSAN_OPTIONS, so
// the processes the tests start -- dsinf ranks under mpirun included -- get
// them whatever environment reaches them.
//
// What third-party libraries keep until exit is not a leak of dsinf's: Open
// MPI and its runtime do not free everything at MPI_Finalize. Their libraries
// have no frame pointers, so the slow unwinder is needed to reach the frames
// these suppressions name. dsinf's own code gets no suppression.

extern "C" {

const char* __lsan_default_options() { return "fast_unwind_on_malloc=0"; }

const char* __lsan_default_suppressions() {
  return "leak:libmpi.so\n"
         "leak:libopen-pal.so\n"
         "leak:libopen-rte.so\n"
         "leak:libpmix.so\n"
         "leak:libhwloc.so\n"
         "leak:libevent\n"
         "leak:mca_\n";
}

}  // extern "C"
