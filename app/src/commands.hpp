// commands — what the program's subcommands do, apart from parsing their arguments (main.cpp).
//
// Each command opens the application (the composition root) on the data directory, does its
// work, prints what happened and returns the process exit status:
//   0 done, every check passed; 1 a check failed (or nothing matched); 2 the program could not
//   start (bad data directory, unusable database); 3 an unexpected error.
//
// Thread-safety: each command owns what it opens; one command per process.
#pragma once

#include <chrono>
#include <cstdint>
#include <iosfwd>
#include <optional>
#include <string>
#include <vector>

#include "application.hpp"
#include "faults.hpp"

namespace payments::app {

enum exit_status : int { exit_ok = 0, exit_check_failed = 1, exit_startup = 2, exit_error = 3 };

struct run_options {
    std::uint64_t transfers = 10'000;
    std::uint32_t users = 100;
    std::uint64_t seed = 1;
    std::uint32_t clients = 1;                 ///< threads sending transfers
    std::optional<std::uint64_t> crash_after;  ///< SIGKILL itself after this many commits
    fault_plan faults;
    bool progress = false;  ///< live progress line on the error stream
    std::chrono::seconds drain_timeout{300};
};

int run_command(const settings& s, const run_options& o, std::ostream& out, std::ostream& err);

struct dead_letter_selection {
    std::vector<std::int64_t> ids;  ///< empty: every letter the filter selects
    std::optional<std::string> subscription;
    std::size_t limit = 1000;
};

int list_dead_letters(const settings& s, const dead_letter_selection& sel, std::ostream& out);
int requeue_dead_letters(const settings& s, const dead_letter_selection& sel, std::ostream& out);
int discard_dead_letters(const settings& s, const dead_letter_selection& sel, std::ostream& out);
int replay_analytics(const settings& s, bool replace, std::ostream& out);
int show_stats(const settings& s, std::ostream& out);

/// Where `run` keeps its latest metrics snapshot (rewritten every second and at the end).
[[nodiscard]] std::filesystem::path metrics_file(const settings& s);

}  // namespace payments::app
