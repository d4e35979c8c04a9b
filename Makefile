# sdmorph — build, test, bench.
#   make              builds ./sdmorph and the analytic test bundle
#   make test         runs every test, one program per CPU at a time
#                     (SDM_TEST_JOBS=N to change); ends with "N passed, N failed"
#   make bench        CPU benchmarks (GPU ones: bench/README.md)
#   make test-asan    every test again, built with AddressSanitizer and
#                     UndefinedBehaviorSanitizer (LeakSanitizer too) in build-asan/
#   make fuzz         libFuzzer on the recipe loader, the tokenizer and its
#                     vocabulary loader, the prompt syntax, the safetensors
#                     reader, the PNG text and image-settings readers of
#                     `import`, the starting-picture reader, FUZZ_SECONDS (60)
#                     each, as many side by side as there are CPUs; fails on a crash
#   make format       rewrites the C sources in .clang-format's style;
#                     make format-check (CI) fails on a file it would change
#   make install      installs the binary, its libtorch side (lib/sdmorph/),
#                     its man page and bash completion under PREFIX
#                     (/usr/local), staged under DESTDIR
#   TORCH_DIR=/path   use that libtorch instead of the one found

# Every make runs as many jobs as there are CPUs unless told otherwise
# (-j N on the command line wins; sub-makes share their parent's jobs).
ifeq ($(MAKELEVEL)$(filter -j%,$(MAKEFLAGS)),0)
MAKEFLAGS += -j$(shell nproc 2>/dev/null || echo 1)
endif

CC       ?= cc
CXX      ?= c++
BUILD    ?= build
BIN      ?= sdmorph
CFLAGS   ?= -O2 -g
CXXFLAGS ?= -O2 -g
# WERROR=1 (CI) turns every warning into an error.
WARN_ALL  = -Wall -Wextra -Wshadow -Wformat=2 $(if $(filter 1,$(WERROR)),-Werror)
WARN      = $(WARN_ALL) -Wmissing-prototypes
CXXWARN   = $(WARN_ALL) -Wmissing-declarations
CPPFLAGS += -Isrc -Ipipeline -Iencoders -Icli -MMD -MP

# What a fresh Debian 12 needs; `make deps` installs whichever are missing.
# The tests also use slurm-wlm and munge (a real Slurm for --shard) and the
# ffmpeg command (`sdmorph measure` checked against videos it makes).
DEBIAN_PACKAGES = gcc g++ make pkg-config libtorch-dev python3-torch \
  libavformat-dev libavcodec-dev libavfilter-dev libswscale-dev libavutil-dev \
  libyaml-dev libutf8proc-dev libjson-c-dev zlib1g-dev clang libclang-rt-14-dev clang-format \
  slurm-wlm munge ffmpeg

ifeq ($(filter-out deps clean uninstall,$(or $(MAKECMDGOALS),all)),)
SKIP_CHECKS = 1
endif

# --- media and parsing libraries, through pkg-config ----------------------
# MEDIA_PREFIX=DIR: a static prefix of these (machines without them, see
# bench/README.md); it is searched first and linked statically.
PKGCONF = pkg-config
ifneq ($(MEDIA_PREFIX),)
PKGCONF = PKG_CONFIG_PATH=$(abspath $(MEDIA_PREFIX))/lib/pkgconfig pkg-config --static
endif
PKGS = libavformat libavcodec libavfilter libswscale libavutil yaml-0.1 libutf8proc json-c zlib
ifndef SKIP_CHECKS
PKG_MISSING := $(strip $(foreach p,$(PKGS),$(if $(shell $(PKGCONF) --exists $(p) && echo y),,$(p))))
ifneq ($(PKG_MISSING),)
$(error missing libraries (pkg-config): $(PKG_MISSING). On Debian: apt-get install libavformat-dev libavcodec-dev libavfilter-dev libswscale-dev libavutil-dev libyaml-dev libutf8proc-dev libjson-c-dev zlib1g-dev pkg-config)
endif
CPPFLAGS += $(shell $(PKGCONF) --cflags $(PKGS))
LIBS     += $(shell $(PKGCONF) --libs $(PKGS))
endif

# --- libtorch: TORCH_DIR=, else Debian's libtorch-dev, else python3's torch --
PYTHON ?= $(firstword $(foreach p,python3 /usr/bin/python3,$(shell $(p) -c 'import torch' 2>/dev/null && echo $(p))))
ifeq ($(TORCH_DIR),)
ifneq ($(wildcard /usr/include/torch/script.h),)
# /usr/include is a system directory already: naming it again breaks #include_next.
TORCH_INC = /usr/include/torch/csrc/api/include
TORCH_LIB = /usr/lib/$(shell $(CC) -print-multiarch)
TORCH_FROM = Debian libtorch-dev
else ifneq ($(PYTHON),)
TORCH_DIR := $(shell $(PYTHON) -c 'import torch,os;print(os.path.dirname(torch.__file__))')
endif
endif
ifneq ($(TORCH_DIR),)
TORCH_INC = $(TORCH_DIR)/include $(TORCH_DIR)/include/torch/csrc/api/include
TORCH_LIB = $(TORCH_DIR)/lib
TORCH_FROM ?= $(TORCH_DIR)
endif
ifeq ($(TORCH_LIB)$(SKIP_CHECKS),)
$(error libtorch not found: apt-get install libtorch-dev, or pip install torch for python3, or set TORCH_DIR=)
endif
TORCH_CUDA := $(wildcard $(TORCH_LIB)/libtorch_cuda.so)
CXXFLAGS += -std=c++17 $(addprefix -isystem ,$(TORCH_INC))
TORCH_LIBS = -L$(TORCH_LIB) -Wl,-rpath,$(TORCH_LIB) -Wl,--no-as-needed -ltorch -ltorch_cpu -lc10 -Wl,--as-needed
ifneq ($(TORCH_CUDA),)
CPPFLAGS  += -DSDM_HAVE_CUDA=1
TORCH_LIBS = -L$(TORCH_LIB) -Wl,-rpath,$(TORCH_LIB) -Wl,--no-as-needed -ltorch -ltorch_cuda -ltorch_cpu -lc10_cuda -lc10 -Wl,--as-needed
endif
# CUDA graphs (the sampling loop replayed with one launch per batch) need
# the CUDA runtime's headers: CUDA_HOME's (default /usr/local/cuda), else
# those torch's wheel ships. On by default where libtorch has CUDA and the
# headers are found; CUDA_GRAPHS=0 builds without them.
CUDA_HOME ?= /usr/local/cuda
CUDA_GRAPHS ?= 1
ifeq ($(CUDA_GRAPHS)$(if $(TORCH_CUDA),y),1y)
CUDA_INC := $(firstword $(patsubst %/cuda_runtime_api.h,%,$(wildcard $(CUDA_HOME)/include/cuda_runtime_api.h \
            $(TORCH_LIB)/../../nvidia/*/include/cuda_runtime_api.h)))
CUDART := $(firstword $(wildcard $(TORCH_LIB)/../../nvidia/*/lib/libcudart.so.* $(CUDA_HOME)/lib64/libcudart.so))
ifneq ($(and $(CUDA_INC),$(CUDART)),)
CPPFLAGS += -DSDM_HAVE_CUDA_GRAPHS=1
CXXFLAGS += -isystem $(CUDA_INC)
TORCH_LIBS += $(CUDART) -Wl,-rpath,$(dir $(CUDART))
TORCH_GRAPHS = , CUDA graphs
else
TORCH_GRAPHS = , no CUDA graphs (CUDA runtime headers or libcudart not found: set CUDA_HOME=)
endif
endif
# AOTInductor packages (.pt2 UNets, export_sd.py --aoti) load where libtorch
# has the package loader (torch >= 2.6, in libtorch_cpu) and CUDA.
AOTI_HEADER := $(firstword $(wildcard $(addsuffix /torch/csrc/inductor/aoti_package/model_package_loader.h, \
               $(TORCH_INC) $(if $(TORCH_DIR),,/usr/include))))
ifneq ($(TORCH_CUDA),)
ifneq ($(AOTI_HEADER),)
CPPFLAGS += -DSDM_HAVE_AOTI=1
TORCH_AOTI = , AOTInductor
endif
endif
# libtorch is linked into the shim only (below), not into sdmorph.
LIBS += -ldl -lpthread -lm

# --- sources ---------------------------------------------------------------
CSRC   = $(wildcard src/*.c pipeline/*.c encoders/*.c cli/*.c)
OBJ    = $(patsubst %.c,$(BUILD)/%.o,$(CSRC))
# libtorch's start-up costs a second of CPU, so sdmorph does not link it: the
# C API over it (torch_api.cpp, with the names it uses) is a shared object of
# its own, which src/torch_load.c loads on the first call that needs it.
SHIM     = $(BUILD)/libsdm_torch.so
SHIM_OBJ = $(addprefix $(BUILD)/shim/src/,torch_api.o torch_names.o enum_table.o)
# The loader refuses a shim built from another torch_api.h, and finds this
# one where the build made it (or beside the binary, or installed).
TORCH_ABI := $(firstword $(shell cksum < src/torch_api.h))
$(BUILD)/src/torch_load.o $(BUILD)/shim/src/torch_api.o: \
  CPPFLAGS += -DSDM_TORCH_ABI='"$(TORCH_ABI)"' -DSDM_TORCH_BUILT='"$(abspath $(SHIM))"'
LIBOBJ = $(filter-out $(BUILD)/cli/main.o,$(OBJ))
# Tests and benches link an archive, so each pulls in only the modules it uses.
LIBA   = $(BUILD)/libsdmorph.a
ALL_TESTS = $(patsubst tests/%.c,$(BUILD)/tests/%,$(wildcard tests/test_*.c))
# tests/run.sh runs them side by side in this order: the slowest first, so
# that the last to start are short and the run ends soon after the longest.
SLOW_TESTS = outputs cli commands shard slurm encoders retime limits pace export bridge text
TESTS  = $(foreach t,$(SLOW_TESTS),$(filter $(BUILD)/tests/test_$(t),$(ALL_TESTS))) \
         $(filter-out $(addprefix $(BUILD)/tests/test_,$(SLOW_TESTS)),$(ALL_TESTS))
BENCHES = $(patsubst bench/%.c,$(BUILD)/bench/%,$(wildcard bench/bench_*.c))
ANALYTIC = $(BUILD)/models/analytic

all: $(BIN) $(SHIM) $(ANALYTIC)/model.yaml recipes/painting.png
	@echo "sdmorph built (libtorch: $(TORCH_FROM)$(if $(TORCH_CUDA), with CUDA$(TORCH_GRAPHS)$(TORCH_AOTI),, CPU only); analytic bundle: $(ANALYTIC))"

# The example recipes' starting picture (recipes/living-painting.yaml),
# drawn by a script: never committed.
recipes/painting.png: recipes/painting.py
	$(PY3) $< $@

$(BIN): $(OBJ) | $(SHIM)
	$(CXX) -o $@ $(OBJ) $(LDFLAGS) $(LIBS)

$(SHIM): $(SHIM_OBJ)
	$(CXX) -shared -o $@ $^ $(LDFLAGS) $(TORCH_LIBS) -lpthread -lm

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(CPPFLAGS) $(CFLAGS) $(WARN) -c -o $@ $<

$(BUILD)/shim/%.o: %.cpp
	@mkdir -p $(dir $@)
	$(CXX) $(CPPFLAGS) $(CXXFLAGS) -fPIC $(CXXWARN) -c -o $@ $<

$(BUILD)/shim/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(CPPFLAGS) $(CFLAGS) -fPIC $(WARN) -c -o $@ $<

$(LIBA): $(LIBOBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(BUILD)/tests/%: tests/%.c $(LIBA) tests/test.h tests/analytic.h tests/cli_run.h | $(SHIM)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(CPPFLAGS) -Itests $(CFLAGS) $(WARN) -c -o $@.o $<
	$(CXX) -o $@ $@.o $(LIBA) $(LDFLAGS) $(LIBS)

$(BUILD)/bench/%: bench/%.c $(LIBA) | $(SHIM)
	@mkdir -p $(dir $@)
	$(CC) -std=c11 -D_GNU_SOURCE $(CPPFLAGS) -Itests $(CFLAGS) $(WARN) -c -o $@.o $<
	$(CXX) -o $@ $@.o $(LIBA) $(LDFLAGS) $(LIBS)

# The analytic test bundle is made here, by the machine's own torch; never committed.
ANALYTIC_PY = pipeline/export/analytic.py pipeline/export/clip_vocab.py pipeline/export/bundle_yaml.py \
              pipeline/export/safetensors_io.py
$(ANALYTIC)/model.yaml: $(ANALYTIC_PY)
	@test -n "$(PYTHON)" || { echo "no python3 with torch found: apt-get install python3-torch" >&2; exit 1; }
	$(PYTHON) pipeline/export/analytic.py --out $(ANALYTIC)

# The v-prediction twin, for the samplers' v tests.
$(ANALYTIC)-v/model.yaml: $(ANALYTIC_PY)
	$(PYTHON) pipeline/export/analytic.py --out $(ANALYTIC)-v --prediction v_prediction

# The older bundle kind (text encoder on token ids), for the tests that it still renders.
$(ANALYTIC)-ids/model.yaml: $(ANALYTIC_PY)
	$(PYTHON) pipeline/export/analytic.py --out $(ANALYTIC)-ids --text-input ids

# The step twin (a sharp step along morphs that cross its plane), for the retiming tests.
$(ANALYTIC)-step/model.yaml: $(ANALYTIC_PY)
	$(PYTHON) pipeline/export/analytic.py --out $(ANALYTIC)-step --step 100

# The SDXL-shaped twin (two text encoders, pooled embedding, time ids), for the SDXL tests.
$(ANALYTIC)-xl/model.yaml: $(ANALYTIC_PY)
	$(PYTHON) pipeline/export/analytic.py --out $(ANALYTIC)-xl --xl

test: $(BIN) $(SHIM) $(ANALYTIC)/model.yaml $(ANALYTIC)-v/model.yaml $(ANALYTIC)-ids/model.yaml $(ANALYTIC)-step/model.yaml \
      $(ANALYTIC)-xl/model.yaml $(TESTS)
	@SDM_BUILD=$(BUILD) SDM_BIN=$(abspath $(BIN)) SDM_PYTHON=$(PYTHON) sh tests/run.sh $(TESTS) tests/check_tree.py

bench: $(BIN) $(SHIM) $(ANALYTIC)/model.yaml $(BENCHES)
	@for b in $(BENCHES); do $$b || exit 1; done

demo: all
	./sdmorph render recipes/demo.yaml -o out/demo.mp4

# The built-in analytic model is not installed: an installed sdmorph needs
# --model, a recipe's model: or $SDMORPH_MODEL.
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
MANDIR ?= $(PREFIX)/share/man
COMPLETIONDIR ?= $(PREFIX)/share/bash-completion/completions
# The shim goes where sdmorph looks for it: ../lib/sdmorph/ from the binary.
SHIMDIR = $(abspath $(BINDIR)/..)/lib/sdmorph

install: $(BIN) $(SHIM)
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(SHIMDIR) $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(COMPLETIONDIR)
	install -m 755 $(BIN) $(DESTDIR)$(BINDIR)/sdmorph
	install -m 755 $(SHIM) $(DESTDIR)$(SHIMDIR)/libsdm_torch.so
	install -m 644 sdmorph.1 $(DESTDIR)$(MANDIR)/man1/sdmorph.1
	install -m 644 completion/sdmorph.bash $(DESTDIR)$(COMPLETIONDIR)/sdmorph

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/sdmorph $(DESTDIR)$(MANDIR)/man1/sdmorph.1 $(DESTDIR)$(COMPLETIONDIR)/sdmorph \
	  $(DESTDIR)$(SHIMDIR)/libsdm_torch.so
	rmdir $(DESTDIR)$(SHIMDIR) 2>/dev/null || true

# --- sanitizers and fuzzing (clang) ----------------------------------------
SAN_CC    ?= clang
SAN_CXX   ?= clang++
SAN_FLAGS  = -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
ASAN_BUILD ?= build-asan
# LeakSanitizer stays on; tests/lsan.supp names only third-party frames.
# intercept_tls_get_addr=0: libtorch is dlopen()ed (src/torch_load.c), so its
# thread-locals are dynamic TLS, whose bounds this LeakSanitizer misreads on
# glibc >= 2.25 and then crashes scanning at exit ("Tracer caught signal 11",
# google/sanitizers#1322); without it, dynamic TLS is not scanned for roots.
SAN_ENV = ASAN_OPTIONS=detect_leaks=1:strict_string_checks=1:check_initialization_order=1:allocator_may_return_null=1:intercept_tls_get_addr=0 \
  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
  LSAN_OPTIONS=suppressions=$(CURDIR)/tests/lsan.supp:print_suppressions=0

# The same suite, every object of ours instrumented (libtorch, FFmpeg and the
# other libraries are not), built apart in $(ASAN_BUILD) with its own binary
# and shim.
test-asan:
	+CFLAGS="-O1 -g $(SAN_FLAGS)" CXXFLAGS="-O1 -g $(SAN_FLAGS)" LDFLAGS="$(SAN_FLAGS)" \
	  $(SAN_ENV) SDMORPH_MODEL=$(ASAN_BUILD)/models/analytic \
	  $(MAKE) BUILD=$(ASAN_BUILD) BIN=$(ASAN_BUILD)/sdmorph CC=$(SAN_CC) CXX=$(SAN_CXX) test

# Fuzz targets link only the modules they test (no libtorch, no FFmpeg), instrumented for
# libFuzzer; their seeds are recipes/, tests/fuzz/corpus/ and the tests' own
# inputs; what they find is kept in $(FUZZ_DIR)/corpus/ between runs.
FUZZ_SECONDS ?= 60
FUZZ_MAX_LEN ?= 4096
FUZZ_DIR  = $(BUILD)/fuzz
FUZZ_SRC  = src/recipe.c src/spacing.c src/output_name.c src/enum_table.c src/gif_options.c src/image_fit.c src/hash.c src/tokenizer.c src/prompt.c src/prompt_chunks.c src/safetensors.c \
            src/png_text.c src/image_params.c src/error.c src/fileset.c src/paths.c src/shard.c pipeline/plan.c pipeline/inputs.c \
            pipeline/segment.c
FUZZ_OBJ  = $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(FUZZ_SRC))
# What those modules parse with.
FUZZ_LIBS = $(shell $(PKGCONF) --libs yaml-0.1 libutf8proc json-c zlib) -lpthread -lm
FUZZERS   = $(patsubst tests/fuzz/%.c,$(FUZZ_DIR)/%,$(wildcard tests/fuzz/fuzz_*.c))
PY3      ?= $(or $(PYTHON),python3)

$(FUZZ_DIR)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(SAN_CC) -std=c11 -D_GNU_SOURCE $(CPPFLAGS) -O1 -g $(SAN_FLAGS) -fsanitize=fuzzer-no-link $(WARN) -c -o $@ $<

$(FUZZ_DIR)/libfuzz.a: $(FUZZ_OBJ)
	@rm -f $@
	$(AR) rcs $@ $^

$(FUZZ_DIR)/fuzz_%: tests/fuzz/fuzz_%.c $(FUZZ_DIR)/libfuzz.a
	$(SAN_CC) -std=c11 -D_GNU_SOURCE $(CPPFLAGS) -O1 -g $(SAN_FLAGS) -fsanitize=fuzzer $(WARN) -o $@ $< \
	  $(FUZZ_DIR)/libfuzz.a $(FUZZ_LIBS)

# Each target's seeds (tests/fuzz/seeds.py: whole files, the string
# literals of test sources, JSON values) and its dictionary tests/fuzz/NAME.dict.
FUZZ_SEEDS_recipe      = --file recipes/*.yaml tests/fuzz/corpus/recipe/* \
                         --literals tests/test_recipe.c tests/test_plan.c tests/test_cli.c --contains : --min-len 8
FUZZ_SEEDS_tokenizer   = --file recipes/*.yaml tests/fuzz/corpus/tokenizer/* --literals tests/test_tokenizer.c
FUZZ_SEEDS_vocab       = --file tests/fuzz/corpus/vocab/*
FUZZ_SEEDS_prompt      = --json tests/fixtures/prompt_attention.json --literals tests/test_prompt.c
FUZZ_SEEDS_safetensors = --file tests/fuzz/corpus/safetensors/*
FUZZ_SEEDS_import      = --file tests/fuzz/corpus/import/*
FUZZ_SEEDS_segment     = --file tests/fuzz/corpus/segment/*
FUZZ_TARGETS = recipe tokenizer vocab prompt safetensors import segment

$(addprefix fuzz-,$(FUZZ_TARGETS)): fuzz-%: $(FUZZ_DIR)/fuzz_%
	@$(PY3) tests/fuzz/seeds.py $(FUZZ_DIR)/seeds/$* $(FUZZ_SEEDS_$*) > /dev/null
	@sh tests/fuzz/run.sh $< $(FUZZ_SECONDS) $(FUZZ_DIR)/seeds/$* -max_len=$(FUZZ_MAX_LEN) -dict=tests/fuzz/$*.dict

# The picture reader decodes through FFmpeg (not instrumented), so it links
# the media libraries and only its own modules of ours; seeds are small
# pictures the build draws and tests/fuzz/corpus/image (a 16x8 JPEG and WebP,
# the ones tests/test_img2img.c decodes).
FUZZ_IMAGE_SRC = encoders/image_in.c encoders/ffutil.c src/image_fit.c src/enum_table.c src/error.c
$(FUZZ_DIR)/fuzz_image: tests/fuzz/fuzz_image.c $(patsubst %.c,$(FUZZ_DIR)/obj/%.o,$(FUZZ_IMAGE_SRC))
	$(SAN_CC) -std=c11 -D_GNU_SOURCE $(CPPFLAGS) -O1 -g $(SAN_FLAGS) -fsanitize=fuzzer $(WARN) -o $@ $< $(filter %.o,$^) \
	  $(shell $(PKGCONF) --libs libavcodec libswscale libavutil) -lpthread -lm

fuzz-image: $(FUZZ_DIR)/fuzz_image
	@mkdir -p $(FUZZ_DIR)/seeds/image
	@$(PY3) recipes/painting.py $(FUZZ_DIR)/seeds/image/landscape.png 24 16
	@$(PY3) recipes/painting.py $(FUZZ_DIR)/seeds/image/tall.png 5 9
	@cp tests/fuzz/corpus/image/* $(FUZZ_DIR)/seeds/image/
	@sh tests/fuzz/run.sh $< $(FUZZ_SECONDS) $(FUZZ_DIR)/seeds/image -max_len=$(FUZZ_MAX_LEN) \
	  -dict=tests/fuzz/image.dict

fuzz: $(addprefix fuzz-,$(FUZZ_TARGETS)) fuzz-image

# The C sources in the style of .clang-format: `make format` rewrites them,
# `make format-check` (CI) fails on any file clang-format would change.
FORMAT_FILES = $(wildcard src/*.c src/*.h src/*.cpp pipeline/*.c pipeline/*.h encoders/*.c encoders/*.h \
  cli/*.c cli/*.h tests/*.c tests/*.h tests/fuzz/*.c tests/fuzz/*.h bench/*.c)
format:
	clang-format -i $(FORMAT_FILES)

format-check:
	@clang-format --dry-run --Werror $(FORMAT_FILES)
	@echo "format: $(words $(FORMAT_FILES)) files as .clang-format has them"

clean:
	rm -rf $(BUILD) $(ASAN_BUILD) $(BIN) recipes/painting.png

deps:
	@missing=$$(for p in $(DEBIAN_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	    echo "installing:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "all build dependencies are installed"; fi

.PHONY: all test bench demo install uninstall clean deps test-asan fuzz fuzz-image $(addprefix fuzz-,$(FUZZ_TARGETS))
-include $(OBJ:.o=.d) $(SHIM_OBJ:.o=.d) $(FUZZ_OBJ:.o=.d) $(FUZZERS:=.d)
