// Which variables each frame of a template holds, as jinja2's compiler
// decides it (jinja2/idtracking.py) before anything renders.
#pragma once

#include "trainer/data/chat_template/ast.h"

namespace dsinf::trainer::jinja {

// Fills the nested frames' slots in `body` and returns the template frame's.
Slots analyze_frames(Body& body);

}  // namespace dsinf::trainer::jinja
