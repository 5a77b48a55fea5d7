#pragma once
// What `spdit launch` asks of the machine before and while it runs ranks:
// ports, cores, a job identity, and whether a rank still does work.
#include <sys/types.h>

#include <map>
#include <string>

namespace spdit::cli {

/// A TCP port on 127.0.0.1 that was free a moment ago.
int find_free_port();

/// True when something listens on `port` (another job's rendezvous store).
/// A TIME_WAIT socket left by an earlier job does not count: the store can
/// bind over it.
bool port_in_use(int port);

/// The cores this process may run on (its affinity mask).
int usable_cores();

/// The job identity the ranks compare at the rendezvous (SPDIT_JOB_ID):
/// SPDIT_JOB_ID or TORCHELASTIC_RUN_ID from the environment when set;
/// otherwise random for a one-node job, and for a multi-node job one every
/// node derives alike from what they share (master address, port, sizes).
std::string job_id_for(const std::string& master_addr, int port, int nnodes, int nproc);

/// CPU seconds used by the processes of each process group (a rank and what
/// it started, with their reaped children), from one pass over /proc.
std::map<pid_t, double> cpu_seconds_by_group();

}  // namespace spdit::cli
