// The program under test as a child process: spawned with its output in a file, waited for
// with a generous limit, or killed with SIGKILL.
#pragma once

#include <fcntl.h>
#include <signal.h>
#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <fstream>
#include <sstream>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

extern char** environ;

namespace payments_test {

struct exit_info {
    bool exited = false;  ///< false: killed by a signal
    int status = 0;       ///< the exit status, or the signal's number
    std::string output;   ///< stdout and stderr together
};

class child_process {
public:
    /// Starts the program with `args`; its stdout and stderr go to `output_file`.
    child_process(const std::string& program, const std::vector<std::string>& args,
                  std::string output_file)
        : output_file_(std::move(output_file)) {
        std::vector<std::string> all{program};
        all.insert(all.end(), args.begin(), args.end());
        std::vector<char*> argv;
        for (auto& a : all) argv.push_back(a.data());
        argv.push_back(nullptr);
        posix_spawn_file_actions_t actions;
        posix_spawn_file_actions_init(&actions);
        posix_spawn_file_actions_addopen(&actions, STDOUT_FILENO, output_file_.c_str(),
                                         O_WRONLY | O_CREAT | O_TRUNC, 0644);
        posix_spawn_file_actions_adddup2(&actions, STDOUT_FILENO, STDERR_FILENO);
        const int rc = posix_spawn(&pid_, program.c_str(), &actions, nullptr, argv.data(), environ);
        posix_spawn_file_actions_destroy(&actions);
        if (rc != 0)
            throw std::runtime_error("cannot start " + program + ": error " + std::to_string(rc));
    }
    child_process(const child_process&) = delete;
    child_process& operator=(const child_process&) = delete;
    ~child_process() {
        if (!reaped_) {
            ::kill(pid_, SIGKILL);
            int status = 0;
            ::waitpid(pid_, &status, 0);
        }
    }

    /// True while the program runs.
    bool running() {
        if (reaped_) return false;
        int status = 0;
        if (::waitpid(pid_, &status, WNOHANG) == pid_) {
            reaped_ = true;
            status_ = status;
            return false;
        }
        return true;
    }

    /// Sends SIGKILL (if it still runs) and waits for it.
    exit_info kill() {
        if (running()) ::kill(pid_, SIGKILL);
        return wait(std::chrono::minutes(5));
    }

    /// Waits until the program ends; throws when it runs past `limit`.
    exit_info wait(std::chrono::milliseconds limit) {
        const auto deadline = std::chrono::steady_clock::now() + limit;
        while (running()) {
            if (std::chrono::steady_clock::now() > deadline) {
                throw std::runtime_error("the program ran past its time limit; output:\n" +
                                         read_output());
            }
            std::this_thread::sleep_for(std::chrono::milliseconds(5));
        }
        exit_info info;
        info.exited = WIFEXITED(status_);
        info.status = info.exited ? WEXITSTATUS(status_) : WTERMSIG(status_);
        info.output = read_output();
        return info;
    }

private:
    std::string read_output() const {
        std::ifstream in(output_file_);
        std::ostringstream s;
        s << in.rdbuf();
        return s.str();
    }

    std::string output_file_;
    pid_t pid_ = -1;
    bool reaped_ = false;
    int status_ = 0;
};

/// Runs the program to its end (within `limit`).
inline exit_info run_program(const std::string& program, const std::vector<std::string>& args,
                             const std::string& output_file,
                             std::chrono::milliseconds limit = std::chrono::minutes(5)) {
    child_process p(program, args, output_file);
    return p.wait(limit);
}

}  // namespace payments_test
