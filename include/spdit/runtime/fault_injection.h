#pragma once
// Test-only fault injection, so that the fault tests can kill a real rank at
// a chosen point: SPDIT_FAULT="rank=R,point=NAME,after=N" makes rank R kill
// itself (SIGKILL) the N-th time (default 1) it passes fault_point(NAME).
// Points: "rendezvous" (before joining), "attention" (each SP attention
// call), "ring_step" (after a ring step's transfer started), "decode" (serve:
// before a banded decode). ",action=throw" makes it throw an error there
// instead of dying. Unset: a no-op.
namespace spdit {

void fault_point(const char* name, int rank);

}  // namespace spdit
