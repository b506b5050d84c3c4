// A persistent pool of std::threads. Kernels call parallel_for(n, fn): tasks 0..n-1 are claimed
// dynamically (atomic counter) by the workers AND the calling thread, so a shared, noisy machine
// still balances. Nested or concurrent calls (worker_threads) run serially instead of deadlocking.
#pragma once
#include <functional>

namespace lowbit {

// Total threads used by kernels, caller included (>= 1).
int pool_threads();
// Resizes the pool (n <= 0 means std::thread::hardware_concurrency()).
void pool_set_threads(int n);
// Runs fn(task) for task in [0, ntasks); returns when all are done.
void parallel_for(int ntasks, const std::function<void(int)>& fn);

}  // namespace lowbit
