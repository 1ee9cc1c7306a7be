# scgi-lua: the program ./scgi-lua and the Lua module scgi.core (build/scgi/core.so).
#
# Variables (LuaRocks passes the ones it knows):
#   LUA_INCDIR  Lua 5.4 headers                  (default: /usr/include/lua5.4)
#   LUA_LIB     how to link the program to Lua   (default: Debian's static liblua5.4.a, its symbols
#               exported for C modules, as /usr/bin/lua5.4 is built; -llua5.4 links the shared one)
#   CFLAGS      optimisation and extra flags     (default: -O2 -g)
#   LDFLAGS     extra link flags (e.g. -L for libev)
#   LIBFLAG     flags that make a shared module  (default: -shared)
#   PREFIX      install prefix                   (default: /usr/local)
#   BINDIR, LIBDIR, LUADIR   where make install puts the program, core.so and the Lua files
#   DESTDIR     staging root for packagers
#   O           build directory                  (default: build; make asan uses build-asan)
#   SANITIZE    e.g. address,undefined           (compiles and links with -fsanitize=...)

LUA_INCDIR ?= /usr/include/lua5.4
# Static: the VM's calls are direct (a Lua-bound handler ran 10% faster than with liblua5.4.so,
# bench/PROFILE.md); -Wl,-E exports the API to the C modules handlers load.
LUA_LIB ?= -Wl,-E -l:liblua5.4.a
CFLAGS ?= -O2 -g
LIBFLAG ?= -shared
PREFIX ?= /usr/local
BINDIR ?= $(PREFIX)/bin
LIBDIR ?= $(PREFIX)/lib/lua/5.4
LUADIR ?= $(PREFIX)/share/lua/5.4
LUA ?= lua5.4
O ?= build
CC ?= cc

WARN = -Wall -Wextra -Wshadow -Wconversion -Wno-sign-conversion -Wstrict-prototypes -Wmissing-prototypes
ALL_CFLAGS = -std=c11 -D_GNU_SOURCE -fPIC -pthread $(WARN) -I$(LUA_INCDIR) -I$(O) \
  -DSCGI_LUADIR='"$(LUADIR)"' $(CFLAGS)
ifneq ($(SANITIZE),)
ALL_CFLAGS += -fsanitize=$(SANITIZE) -fno-omit-frame-pointer -fno-sanitize-recover=all
LDSAN = -fsanitize=$(SANITIZE)
endif

CORE = scgi_parse config addr log stats statsweb listen super priv shdict conn refuse accept sock tls pool resolver app load task request guard spawn upkeep lclient lsocket ltls lshared lcoro ltask worker server lscgi
CORE_OBJ = $(CORE:%=$(O)/%.o)
PROGRAM = $(O)/scgi-lua
MODULE = $(O)/scgi/core.so


.PHONY: deps-test
.PHONY: all test test-c test-spec run install uninstall clean asan bench fuzz fuzz-regress soak format \
  format-check

all: $(PROGRAM) $(MODULE)
ifeq ($(O),build)
all: scgi-lua
scgi-lua: $(PROGRAM)
	cp $< $@
endif

# The Lua files compiled into the module, as C strings: core/NAME.lua gives NAME_lua.
LUA_SOURCES = $(O)/client_lua.h $(O)/luasocket_lua.h
.SECONDARY: $(LUA_SOURCES) # kept: make would delete them as intermediates, then rebuild all
$(O)/%_lua.h: core/%.lua
	@mkdir -p $(O)
	{ echo 'static const char $*_lua[] ='; \
	  sed -e 's/\\/\\\\/g' -e 's/"/\\"/g' -e 's/^/  "/' -e 's/$$/\\n"/' $<; echo ';'; } > $@

# -MMD -MP: each object depends on the headers it includes (build/*.d), no more.
$(O)/%.o: core/%.c $(LUA_SOURCES)
	@mkdir -p $(O)
	$(CC) $(ALL_CFLAGS) -MMD -MP -c $< -o $@

-include $(wildcard $(O)/*.d)

$(PROGRAM): $(CORE_OBJ) $(O)/main.o
	$(CC) $(CFLAGS) $(LDFLAGS) $(LDSAN) -pthread -o $@ $^ $(LUA_LIB) -lev -lssl -lcrypto -lm

$(MODULE): $(CORE_OBJ)
	@mkdir -p $(O)/scgi
	$(CC) $(CFLAGS) $(LDFLAGS) $(LDSAN) $(LIBFLAG) -pthread -o $@ $^ -lev -lssl -lcrypto -lm

# The parser's C tests always run under ASan and UBSan; CFLAGS adds to (or overrides) -O1 -g.
$(O)/test_parse: spec/test_parse.c core/scgi_parse.c core/scgi_parse.h
	@mkdir -p $(O)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -Icore -O1 -g $(CFLAGS) -fsanitize=address,undefined \
	  -fno-sanitize-recover=all -o $@ spec/test_parse.c core/scgi_parse.c

# The WebSocket frame layer's C tests, under ASan and UBSan like the parser's.
$(O)/test_ws_frame: spec/test_ws_frame.c core/ws_frame.c core/ws_frame.h
	@mkdir -p $(O)
	$(CC) -std=c11 -D_GNU_SOURCE $(WARN) -Icore -O1 -g $(CFLAGS) -fsanitize=address,undefined \
	  -fno-sanitize-recover=all -o $@ spec/test_ws_frame.c core/ws_frame.c

C_TESTS = $(O)/test_parse $(O)/test_ws_frame

# The C tests (under ASan and UBSan) and the busted specs; ends with "N passed, N failed".
test: deps-test
	@$(MAKE) --no-print-directory all $(C_TESTS)
	@sh spec/run.sh $(O)

deps-test:
	@sh .ci/deps.sh test

test-c: $(C_TESTS)
	$(O)/test_parse
	$(O)/test_ws_frame

asan:
	$(MAKE) O=build-asan SANITIZE=address,undefined CFLAGS='-O1 -g' all build-asan/test_parse \
	  build-asan/test_ws_frame

run:
	@sh examples/run.sh

# bench/all.sh: every benchmark in turn (run, scale, lua, upload, compare), writing bench/RESULTS.md,
# bench/results.png and the generated parts of bench/PROFILE.md (about 15 minutes).
bench:
	@O=$(O) bash bench/all.sh

# Fuzzing (clang's libFuzzer; docs/fuzzing.md): each target runs FUZZ_SECONDS on a corpus grown
# in build-fuzz/ from the seeds in fuzz/corpus/; fuzz-regress replays seeds and regressions once.
FUZZ_SECONDS ?= 60
FUZZ_CC ?= clang
FUZZ_FLAGS = -g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all \
  -fno-omit-frame-pointer -std=c11 -D_GNU_SOURCE -I$(LUA_INCDIR) -Ibuild-fuzz
FUZZ_RUN = -max_total_time=$(FUZZ_SECONDS) -timeout=25 -print_final_stats=1
FUZZ_CORE = $(filter-out core/main.c,$(wildcard core/*.c))

build-fuzz/fuzz_parse: fuzz/fuzz_parse.c core/scgi_parse.c core/scgi_parse.h
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ fuzz/fuzz_parse.c core/scgi_parse.c

build-fuzz/fuzz_conn: fuzz/fuzz_conn.c $(FUZZ_CORE) core/*.h core/*.lua
	$(MAKE) O=build-fuzz build-fuzz/client_lua.h build-fuzz/luasocket_lua.h
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ fuzz/fuzz_conn.c $(FUZZ_CORE) $(LUA_LIB) -lev -lssl -lcrypto -lm -pthread

build-fuzz/fuzz_ws_frame: fuzz/fuzz_ws_frame.c core/ws_frame.c core/ws_frame.h
	@mkdir -p build-fuzz
	$(FUZZ_CC) $(FUZZ_FLAGS) -o $@ fuzz/fuzz_ws_frame.c core/ws_frame.c

FUZZ_TARGETS = build-fuzz/fuzz_parse build-fuzz/fuzz_conn build-fuzz/fuzz_ws_frame

fuzz: $(FUZZ_TARGETS)
	@mkdir -p build-fuzz/corpus-parse build-fuzz/corpus-conn build-fuzz/corpus-ws_frame
	cd build-fuzz && ./fuzz_parse $(FUZZ_RUN) corpus-parse ../fuzz/corpus/parse
	cd build-fuzz && ./fuzz_conn $(FUZZ_RUN) -dict=../fuzz/conn.dict corpus-conn ../fuzz/corpus/conn
	cd build-fuzz && ./fuzz_ws_frame $(FUZZ_RUN) corpus-ws_frame ../fuzz/corpus/ws_frame

fuzz-regress: $(FUZZ_TARGETS)
	build-fuzz/fuzz_parse -runs=0 fuzz/corpus/parse $(wildcard fuzz/regressions/parse)
	build-fuzz/fuzz_conn -runs=0 fuzz/corpus/conn $(wildcard fuzz/regressions/conn)
	build-fuzz/fuzz_ws_frame -runs=0 fuzz/corpus/ws_frame $(wildcard fuzz/regressions/ws_frame)

# Ten minutes (SOAK_SECONDS) of mixed traffic through nginx and direct; not part of make test.
soak: all
	SCGI_LUA=$(PROGRAM) $(LUA) soak/run.lua

install: all
	install -d $(DESTDIR)$(BINDIR) $(DESTDIR)$(LIBDIR)/scgi $(DESTDIR)$(LUADIR)/scgi
	install -m 755 $(PROGRAM) $(DESTDIR)$(BINDIR)/scgi-lua
	install -m 755 $(MODULE) $(DESTDIR)$(LIBDIR)/scgi/core.so
	install -m 644 lua/scgi/*.lua $(DESTDIR)$(LUADIR)/scgi/

uninstall:
	rm -f $(DESTDIR)$(BINDIR)/scgi-lua $(DESTDIR)$(LIBDIR)/scgi/core.so
	rm -rf $(DESTDIR)$(LUADIR)/scgi

format:
	clang-format -i core/*.c core/*.h bench/*.c fuzz/*.c spec/*.c

format-check:
	clang-format --dry-run --Werror core/*.c core/*.h bench/*.c fuzz/*.c spec/*.c

clean:
	rm -rf build build-asan build-dev build-fuzz scgi-lua
