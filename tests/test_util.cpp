#include "test_util.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <opencv2/core.hpp>
#include <opencv2/imgcodecs.hpp>
#include <sstream>

namespace fs = std::filesystem;

namespace cnnviz::test {

namespace {

std::string env_or(const char* name, const std::string& fallback) {
  const char* v = std::getenv(name);
  return v && *v ? v : fallback;
}

}  // namespace

std::string source_dir() { return CNNVIZ_SOURCE_DIR; }
std::string cnnviz_bin() { return env_or("CNNVIZ_TEST_BIN", CNNVIZ_BIN); }
std::string python() { return env_or("CNNVIZ_PYTHON", CNNVIZ_PYTHON); }
std::string test_models_dir() { return env_or("CNNVIZ_TEST_MODELS", CNNVIZ_TEST_MODELS); }

std::string shared_dir() {
  std::string dir = env_or("CNNVIZ_SHARED", CNNVIZ_SHARED_DEFAULT);
  return fs::is_directory(dir) ? dir : "";
}

std::string squeezenet_path() {
  std::string path = test_models_dir() + "/squeezenet1_1.pt";
  EXPECT_TRUE(fs::exists(path)) << path << " missing: run the tests through ctest (its "
                                << "fixture.export_models exports it)";
  return path;
}

TempDir::TempDir() {
  std::string tmpl = (fs::temp_directory_path() / "cnnviz-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  fs::permissions(path_, fs::perms::owner_all, fs::perm_options::add, ec);
  fs::remove_all(path_, ec);
}

void write_text(const std::string& path, const std::string& text) {
  std::ofstream f(path, std::ios::binary);
  f << text;
}

std::string read_text(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

namespace {

// With $CNNVIZ_TEST_JSON_DIR set (ctest sets it for the cli tests), every
// JSON document a successful run printed (--json) or wrote into its -o
// directory (manifests, evaluate.json, the lines it appended to journals) is
// copied there; the schema.cli_outputs test validates them all against
// schemas/ afterwards. Files a test planted and the run left alone are not
// the run's output: only what changed during the run is taken.
const char* json_dir() {
  const char* dir = std::getenv("CNNVIZ_TEST_JSON_DIR");
  return dir && *dir ? dir : nullptr;
}

std::string outdir_of(const std::vector<std::string>& args) {
  for (size_t i = 0; i + 1 < args.size(); ++i) {
    if (args[i] == "-o" || args[i] == "--outdir") return args[i + 1];
  }
  return "";
}

// Run files of `dir` (manifest*.json, journal*.jsonl, evaluate*.json,
// top-activations*.json) with
// their size and modification time.
std::map<std::string, std::pair<uintmax_t, fs::file_time_type>> run_files(const std::string& dir) {
  std::map<std::string, std::pair<uintmax_t, fs::file_time_type>> files;
  std::error_code ec;
  if (dir.empty()) return files;
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    const std::string ext = it->path().extension().string();
    const bool run_file = name.rfind("manifest", 0) == 0 || name.rfind("journal", 0) == 0 ||
                          name.rfind("evaluate", 0) == 0 || name.rfind("top-activations", 0) == 0;
    if (run_file && (ext == ".json" || ext == ".jsonl") && it->is_regular_file(ec)) {
      files[name] = {it->file_size(ec), it->last_write_time(ec)};
    }
  }
  return files;
}

void collect_json(const std::vector<std::string>& args, const RunResult& r,
                  const std::map<std::string, std::pair<uintmax_t, fs::file_time_type>>& before) {
  const char* dir = json_dir();
  if (!dir || r.exit_code != 0) return;
  static int counter = 0;
  const std::string prefix =
      std::string(dir) + "/" + std::to_string(getpid()) + "-" + std::to_string(++counter) + "-";
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (std::find(args.begin(), args.end(), "--json") != args.end() && !r.out.empty() &&
      r.out[0] == '{') {
    write_text(prefix + "stdout.json", r.out);
  }
  const std::string outdir = outdir_of(args);
  for (const auto& [name, now] : run_files(outdir)) {
    auto was = before.find(name);
    if (was != before.end() && was->second == now) continue;  // not touched by the run
    const std::string text = read_text(outdir + "/" + name);
    const bool appended = was != before.end() && name.size() > 6 &&
                          name.compare(name.size() - 6, 6, ".jsonl") == 0 &&
                          was->second.first <= text.size();
    write_text(prefix + name, appended ? text.substr(was->second.first) : text);
  }
}
}  // namespace

RunResult run_cnnviz(std::vector<std::string> args, std::map<std::string, std::string> env,
                     const std::string& stdin_text) {
  args.insert(args.begin(), cnnviz_bin());
  env.emplace("CNNVIZ_MODEL", "");
  env.emplace("CNNVIZ_MODELS", "");
  // Neither the developer's config file nor their models directory.
  env.emplace("XDG_CONFIG_HOME", "/nonexistent/cnnviz-test-config");
  env.emplace("XDG_DATA_HOME", "/nonexistent/cnnviz-test-data");
  const auto before = json_dir()
                          ? run_files(outdir_of(args))
                          : std::map<std::string, std::pair<uintmax_t, fs::file_time_type>>();
  RunResult r = run(args, env, stdin_text);
  collect_json(args, r, before);
  return r;
}

int start(const std::vector<std::string>& argv, const std::string& dir,
          const std::map<std::string, std::string>& env) {
  const std::string out_path = dir + "/stdout", err_path = dir + "/stderr",
                    in_path = dir + "/stdin";
  if (!std::filesystem::exists(in_path)) write_text(in_path, "");
  pid_t pid = fork();
  if (pid < 0) throw std::runtime_error("fork failed");
  if (pid == 0) {
    int out = open(out_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int err = open(err_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC, 0644);
    int in = open(in_path.c_str(), O_RDONLY);
    dup2(in, 0);
    dup2(out, 1);
    dup2(err, 2);
    for (const auto& [k, v] : env) {
      if (v.empty()) {
        unsetenv(k.c_str());
      } else {
        setenv(k.c_str(), v.c_str(), 1);
      }
    }
    std::vector<char*> args;
    for (const std::string& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    execv(args[0], args.data());
    _exit(127);
  }
  return pid;
}

RunResult finish(int pid, const std::string& dir) {
  int status = 0;
  waitpid(pid, &status, 0);
  RunResult r;
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  r.out = read_text(dir + "/stdout");
  r.err = read_text(dir + "/stderr");
  return r;
}

RunResult run(const std::vector<std::string>& argv, const std::map<std::string, std::string>& env,
              const std::string& stdin_text) {
  TempDir dir;
  write_text(dir.file("stdin"), stdin_text);
  return finish(start(argv, dir.path(), env), dir.path());
}

RunResult run_reference(const std::string& script, const std::vector<std::string>& args) {
  std::vector<std::string> argv = {python(), source_dir() + "/tests/reference/" + script};
  argv.insert(argv.end(), args.begin(), args.end());
  return run(argv);
}

std::vector<std::string> lines(const std::string& text) {
  std::vector<std::string> result;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) result.push_back(line);
  return result;
}

std::string nested_arrays(int depth) { return std::string(depth, '[') + std::string(depth, ']'); }

void expect_error(const std::function<void()>& fn, ErrorCode code, const std::string& substring) {
  try {
    fn();
    ADD_FAILURE() << "expected cnnviz::Error containing '" << substring << "', nothing thrown";
  } catch (const Error& e) {
    EXPECT_EQ(static_cast<int>(e.code()), static_cast<int>(code)) << e.what();
    EXPECT_NE(std::string(e.what()).find(substring), std::string::npos)
        << "message '" << e.what() << "' lacks '" << substring << "'";
    EXPECT_EQ(std::string(e.what()).find('\n'), std::string::npos) << "message is not one line";
  }
}

void PhotoCliTest::SetUp() {
  model_ = squeezenet_path();
  cv::Mat img(180, 240, CV_8UC3);
  cv::randu(img, 0, 255);
  image_ = dir_.file("photo.png");
  ASSERT_TRUE(cv::imwrite(image_, img));
  out_ = dir_.file("out");
}

RunResult PhotoCliTest::cnnviz(const std::vector<std::string>& args) { return run_cnnviz(args); }

nlohmann::json PhotoCliTest::read_json(const std::string& path) {
  return nlohmann::json::parse(read_text(path));
}

}  // namespace cnnviz::test
