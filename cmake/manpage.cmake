# Writes the man page cnnviz.1 from the binary's own help, so that it never
# drifts from the CLI: help2man turns `cnnviz --help` and `--version` into
# the page, docs/cnnviz.h2m adds the sections help cannot say (environment,
# files), the exit status comes from help's "Exit codes:" footer, and each
# subcommand's `--help` becomes a subsection.
#   cmake -DCNNVIZ=bin -DHELP2MAN=help2man -DINCLUDE=docs/cnnviz.h2m
#         -DWORK=dir -DOUT=cnnviz.1 -P manpage.cmake
execute_process(COMMAND ${CNNVIZ} --help OUTPUT_VARIABLE help RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "cnnviz --help failed (${rc})")
endif()
string(REPLACE "\n" ";" lines "${help}")
set(in_list OFF)
set(subcommands)
set(exit_status)
foreach(line IN LISTS lines)
  if(line MATCHES "^Exit codes: (.*)$")
    set(exit_status "${CMAKE_MATCH_1}")
  elseif(line STREQUAL "Subcommands:")
    set(in_list ON)
  elseif(in_list AND line MATCHES "^  ([a-z0-9+_-]+)")
    list(APPEND subcommands ${CMAKE_MATCH_1})
  elseif(in_list AND line STREQUAL "")
    set(in_list OFF)
  endif()
endforeach()
if(NOT subcommands)
  message(FATAL_ERROR "no subcommands in `cnnviz --help`")
endif()

if(NOT exit_status)
  message(FATAL_ERROR "no 'Exit codes:' footer in `cnnviz --help`")
endif()

set(page "[EXIT STATUS]\n${exit_status}.\n\n[SUBCOMMANDS]\nEach subcommand's own help (`cnnviz SUBCOMMAND --help`).\n")
foreach(sub IN LISTS subcommands)
  execute_process(COMMAND ${CNNVIZ} ${sub} --help OUTPUT_VARIABLE text RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "cnnviz ${sub} --help failed (${rc})")
  endif()
  # roff: a backslash is \e; a line starting with . or ' is not a request.
  string(REPLACE "\\" "\\e" text "${text}")
  string(REGEX REPLACE "(^|\n)([.'])" "\\1\\\\&\\2" text "${text}")
  string(APPEND page ".SS ${sub}\n.nf\n${text}.fi\n")
endforeach()
file(WRITE ${WORK}/subcommands.h2m "${page}")

execute_process(
  COMMAND ${HELP2MAN} --no-info --section 1
          --name "see what an image classifier looks at: attribution maps from TorchScript models"
          --include ${INCLUDE} --include ${WORK}/subcommands.h2m --output ${OUT} ${CNNVIZ}
  RESULT_VARIABLE rc)
if(NOT rc EQUAL 0)
  message(FATAL_ERROR "help2man failed (${rc})")
endif()
