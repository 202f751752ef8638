// Checkpoints: a save/load round trip resumes training identically (parameters, optimizer state, random
// stream); every defect of a file -- truncation, a corrupt header, a missing, unexpected, mis-shaped or
// mis-typed tensor, the wrong optimizer -- is a loom::Error naming the file and the tensor, and leaves the model
// and optimizer exactly as they were.
#include <gtest/gtest.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <string>
#include <vector>

#include "loom/loom.h"
#include "support/expect.h"

using namespace loom;
using test::expect_error;
namespace fs = std::filesystem;

namespace {

struct Tiny : nn::Module {
  Tiny() : Module("Tiny") {
    embed = register_module("embed", std::make_shared<nn::Embedding>(10, 4));
    block = register_module("block", std::make_shared<nn::TransformerBlock>(4, 2));
    head = register_module("head", std::make_shared<nn::Linear>(4, 10));
    register_buffer("ids", arange(3.0));
  }
  std::shared_ptr<nn::Embedding> embed;
  std::shared_ptr<nn::TransformerBlock> block;
  std::shared_ptr<nn::Linear> head;
};

// A deterministic stand-in for backward: every parameter gets grad = 0.3 * p + 0.05 * (its index + 1).
void fake_backward(nn::Module& m) {
  NoGradGuard no_grad;
  int i = 0;
  for (const Tensor& p : m.parameters()) p.set_grad(add(mul(p.detach(), 0.3), 0.05 * ++i));
}

std::map<std::string, Tensor> snapshot(const nn::Module& m) {
  std::map<std::string, Tensor> out;
  for (const auto& [name, t] : m.state_dict()) out[name] = t.detach().clone();
  return out;
}

void expect_same(const nn::Module& m, const std::map<std::string, Tensor>& want) {
  for (const auto& [name, t] : m.state_dict()) {
    ASSERT_TRUE(want.count(name)) << name;
    EXPECT_TRUE(allclose(t.detach(), want.at(name), 0, 0)) << name << " changed";
  }
}

class Checkpoint : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string tmpl = (fs::temp_directory_path() / "loom_checkpoint_XXXXXX").string();
    ASSERT_NE(mkdtemp(tmpl.data()), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }
  std::string path(const std::string& name) const { return (dir_ / name).string(); }

  // Writes `m`'s state dict, edited by `edit`, as a plain safetensors file.
  std::string write_edited(const nn::Module& m, const std::function<void(std::map<std::string, Tensor>&)>& edit) {
    std::map<std::string, Tensor> sd;
    for (const auto& [name, t] : m.state_dict()) sd[name] = t.detach();
    edit(sd);
    std::vector<std::pair<std::string, Tensor>> list(sd.begin(), sd.end());
    std::string p = path("edited.safetensors");
    save_safetensors(p, list);
    return p;
  }

  // Expects load_checkpoint to fail with every needle in the message (and the file's path), changing nothing.
  void expect_rejected(const std::string& file, std::vector<std::string> needles, bool with_optimizer = false) {
    manual_seed(42);
    Tiny target;
    nn::AdamW opt(target.named_parameters());
    fake_backward(target);
    opt.step();  // so the optimizer has state worth protecting
    auto before = snapshot(target);
    nn::OptimizerState opt_before = opt.state_dict();
    std::map<std::string, Tensor> buffers_before;
    for (const auto& [k, t] : opt_before.tensors) buffers_before[k] = t.clone();
    needles.push_back("load_checkpoint");
    needles.push_back(file);
    expect_error([&] { nn::load_checkpoint(file, target, with_optimizer ? &opt : nullptr); }, needles);
    expect_same(target, before);
    nn::OptimizerState opt_after = opt.state_dict();
    EXPECT_EQ(opt_after.steps, opt_before.steps);
    EXPECT_EQ(opt_after.hyperparameters, opt_before.hyperparameters);
    for (const auto& [k, t] : opt_after.tensors) EXPECT_TRUE(allclose(t, buffers_before.at(k), 0, 0)) << k;
  }

  fs::path dir_;
};

TEST_F(Checkpoint, RoundTripResumesIdentically) {
  manual_seed(1);
  Tiny a;
  nn::AdamW opt_a(a.named_parameters(), 1e-2);
  for (int k = 0; k < 2; ++k) {
    fake_backward(a);
    opt_a.step();
  }
  std::string file = path("ckpt.safetensors");
  nn::save_checkpoint(file, a, &opt_a, {{"epoch", "3"}, {"note", "hello"}});
  EXPECT_FALSE(fs::exists(file + ".tmp"));
  Tensor draws_a = rand({6});  // what the random stream gives next

  manual_seed(2);
  Tiny b;
  nn::AdamW opt_b(b.named_parameters(), 0.5, {0.5, 0.6}, 1e-3, 0.0);
  std::map<std::string, std::string> meta = nn::load_checkpoint(file, b, &opt_b);
  EXPECT_EQ(meta, (std::map<std::string, std::string>{{"epoch", "3"}, {"note", "hello"}}));
  EXPECT_TRUE(allclose(rand({6}), draws_a, 0, 0)) << "the random stream was not restored";
  expect_same(b, snapshot(a));
  EXPECT_EQ(opt_b.lr(), 1e-2);
  EXPECT_EQ(opt_b.options().betas.first, 0.9);
  EXPECT_EQ(opt_b.step_count("block.fc1.weight"), 2);

  // The next steps are identical, bit for bit.
  for (int k = 0; k < 2; ++k) {
    fake_backward(a);
    fake_backward(b);
    opt_a.step();
    opt_b.step();
  }
  expect_same(b, snapshot(a));

  // Weights only: the optimizer part of the file is ignored.
  Tiny c;
  nn::load_checkpoint(file, c);
  nn::save_checkpoint(file, a);  // overwriting works (and drops the optimizer state)
  nn::load_checkpoint(file, c);
  expect_same(c, snapshot(a));
}

TEST_F(Checkpoint, SgdStateAndSteps) {
  manual_seed(3);
  Tiny a;
  nn::SGD opt_a(a.named_parameters(), 0.1, 0.9, 0.0, true);
  fake_backward(a);
  opt_a.step();
  std::string file = path("sgd.safetensors");
  nn::save_checkpoint(file, a, &opt_a);
  auto raw = load_safetensors_with_metadata(file);
  EXPECT_TRUE(raw.tensors.count("optim.head.weight.momentum_buffer"));
  EXPECT_EQ(raw.metadata.at("optim.type"), "SGD");
  EXPECT_EQ(raw.metadata.at("optim.head.weight.step"), "1");
  EXPECT_EQ(raw.metadata.at("optim.nesterov"), "1");
  Tiny b;
  nn::SGD opt_b(b.named_parameters(), 0.1);  // momentum 0 until the checkpoint restores 0.9
  nn::load_checkpoint(file, b, &opt_b);
  EXPECT_EQ(opt_b.options().momentum, 0.9);
  EXPECT_TRUE(opt_b.options().nesterov);
  fake_backward(a);
  fake_backward(b);
  opt_a.step();
  opt_b.step();
  expect_same(b, snapshot(a));
}

TEST_F(Checkpoint, TruncatedFileIsRejected) {
  Tiny a;
  nn::AdamW opt(a.named_parameters());
  std::string file = path("t.safetensors");
  nn::save_checkpoint(file, a, &opt);
  fs::resize_file(file, fs::file_size(file) / 2);
  expect_rejected(file, {"load_safetensors"}, true);
}

TEST_F(Checkpoint, CorruptHeaderIsRejected) {
  Tiny a;
  std::string file = path("c.safetensors");
  nn::save_checkpoint(file, a);
  {
    std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(8);
    f << "}}}}garbage";
  }
  expect_rejected(file, {"not valid JSON"});
  // Not a safetensors file at all, and no file.
  { std::ofstream(path("junk")) << "abc"; }
  expect_rejected(path("junk"), {"fewer than the 8-byte header"});
  expect_rejected(path("absent.safetensors"), {"no such file"});
}

TEST_F(Checkpoint, MissingTensorIsRejected) {
  Tiny a;
  expect_rejected(write_edited(a, [](auto& sd) { sd.erase("block.attn.in_proj_bias"); }),
                  {"missing tensor 'block.attn.in_proj_bias'", "float32[12]"});
}

TEST_F(Checkpoint, UnexpectedTensorIsRejected) {
  Tiny a;
  expect_rejected(write_edited(a, [](auto& sd) { sd["block.extra"] = zeros({2}); }),
                  {"unexpected tensor 'block.extra'"});
}

TEST_F(Checkpoint, WrongShapeAndDtypeAreRejected) {
  Tiny a;
  expect_rejected(write_edited(a, [](auto& sd) { sd["head.weight"] = zeros({10, 5}); }),
                  {"'head.weight' is float32[10, 5] but the module's is float32[10, 4]"});
  expect_rejected(write_edited(a, [](auto& sd) { sd["head.bias"] = zeros({10}, DType::Float64); }),
                  {"'head.bias' is float64[10] but the module's is float32[10]"});
  // Several problems are reported together.
  expect_rejected(write_edited(a,
                               [](auto& sd) {
                                 sd.erase("ids");
                                 sd["embed.weight"] = zeros({11, 4});
                               }),
                  {"missing tensor 'ids'", "'embed.weight' is float32[11, 4]"});
}

TEST_F(Checkpoint, OptimizerMismatchLeavesTheValidModelUntouchedToo) {
  Tiny a;
  nn::SGD sgd(a.named_parameters(), 0.1, 0.9);
  fake_backward(a);
  sgd.step();
  std::string file = path("sgd.safetensors");
  nn::save_checkpoint(file, a, &sgd);
  // The module part is fine; the optimizer part is for SGD, not AdamW: nothing at all is loaded.
  expect_rejected(file, {"optimizer AdamW", "'SGD', not AdamW"}, true);
  // A file without optimizer state cannot restore one.
  nn::save_checkpoint(file, a);
  expect_rejected(file, {"no optimizer state"}, true);
  // A corrupted optimizer buffer shape.
  nn::AdamW adamw(a.named_parameters());
  fake_backward(a);
  adamw.step();
  nn::save_checkpoint(file, a, &adamw);
  SafetensorsContents raw = load_safetensors_with_metadata(file);
  raw.tensors["optim.head.bias.exp_avg"] = zeros({3});
  std::vector<std::pair<std::string, Tensor>> list(raw.tensors.begin(), raw.tensors.end());
  save_safetensors(file, list, raw.metadata);
  expect_rejected(file, {"'head.bias.exp_avg' is float32[3] but parameter 'head.bias' is float32[10]"}, true);
  // A step counter that is not a number.
  raw.tensors["optim.head.bias.exp_avg"] = zeros({10});
  raw.metadata["optim.head.bias.step"] = "two";
  list.assign(raw.tensors.begin(), raw.tensors.end());
  save_safetensors(file, list, raw.metadata);
  expect_rejected(file, {"'optim.head.bias.step' is not an integer"}, true);
}

TEST_F(Checkpoint, ReservedNamesAreRefusedOnSave) {
  Tiny a;
  expect_error([&] { nn::save_checkpoint(path("x"), a, nullptr, {{"optim.lr", "1"}}); },
               {"save_checkpoint", "'optim.lr'", "reserve"});
  expect_error([&] { nn::save_checkpoint(path("x"), a, nullptr, {{"loom.rng_seed", "1"}}); }, {"'loom.rng_seed'"});
  struct Bad : nn::Module {
    Bad() : Module("Bad") { register_module("optim", std::make_shared<nn::Linear>(2, 2)); }
  } bad;
  expect_error([&] { nn::save_checkpoint(path("x"), bad); }, {"'optim.weight'", "reserve"});
}

}  // namespace
