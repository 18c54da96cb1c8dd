# What `cmake --install` puts under the prefix, and the Debian package
# (scripts/package.sh: cpack -G DEB) made from the same rules:
#   bin/cnnviz, bin/cnnviz-export
#   share/cnnviz/scripts/   the export script and its helper
#   share/man/man1/cnnviz.1 (help2man, from the binary's own help)
#   share/bash-completion/completions/cnnviz, share/zsh/vendor-completions/_cnnviz
#   share/doc/cnnviz/       README.md, CHANGELOG.md, LICENSE, docs/ (the topic pages)
install(TARGETS cnnviz RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})

configure_file(${CMAKE_CURRENT_LIST_DIR}/cnnviz-export.in ${CMAKE_BINARY_DIR}/cnnviz-export @ONLY)
install(PROGRAMS ${CMAKE_BINARY_DIR}/cnnviz-export DESTINATION ${CMAKE_INSTALL_BINDIR})
install(PROGRAMS ${PROJECT_SOURCE_DIR}/scripts/export_models.py
        DESTINATION ${CMAKE_INSTALL_DATADIR}/cnnviz/scripts)
install(FILES ${PROJECT_SOURCE_DIR}/scripts/cnnviz_python.py
              ${PROJECT_SOURCE_DIR}/scripts/torchvision_detectors.py
        DESTINATION ${CMAKE_INSTALL_DATADIR}/cnnviz/scripts)
install(FILES ${PROJECT_SOURCE_DIR}/README.md ${PROJECT_SOURCE_DIR}/CHANGELOG.md
              ${PROJECT_SOURCE_DIR}/LICENSE DESTINATION ${CMAKE_INSTALL_DOCDIR})
# The README's links lead into docs/: the topic pages and their pictures.
install(DIRECTORY ${PROJECT_SOURCE_DIR}/docs/ DESTINATION ${CMAKE_INSTALL_DOCDIR}/docs
        FILES_MATCHING PATTERN "*.md" PATTERN "*.jpg")

# Shell completions, written by the binary from its own CLI definition.
set(_completions ${CMAKE_BINARY_DIR}/completions)
add_custom_command(
  OUTPUT ${_completions}/cnnviz ${_completions}/_cnnviz
  COMMAND ${CMAKE_COMMAND} -E make_directory ${_completions}
  COMMAND $<TARGET_FILE:cnnviz> completion bash > ${_completions}/cnnviz
  COMMAND $<TARGET_FILE:cnnviz> completion zsh > ${_completions}/_cnnviz
  DEPENDS cnnviz
  COMMENT "Generating the bash and zsh completions")
add_custom_target(cnnviz_completions ALL DEPENDS ${_completions}/cnnviz ${_completions}/_cnnviz)
install(FILES ${_completions}/cnnviz DESTINATION ${CMAKE_INSTALL_DATADIR}/bash-completion/completions)
install(FILES ${_completions}/_cnnviz DESTINATION ${CMAKE_INSTALL_DATADIR}/zsh/vendor-completions)

# The man page (Debian's help2man; scripts/setup.sh installs it).
find_program(HELP2MAN help2man)
if(HELP2MAN)
  set(_man ${CMAKE_BINARY_DIR}/man/cnnviz.1)
  add_custom_command(
    OUTPUT ${_man}
    COMMAND ${CMAKE_COMMAND} -E make_directory ${CMAKE_BINARY_DIR}/man
    COMMAND ${CMAKE_COMMAND} -DCNNVIZ=$<TARGET_FILE:cnnviz> -DHELP2MAN=${HELP2MAN}
            -DINCLUDE=${PROJECT_SOURCE_DIR}/docs/cnnviz.h2m -DWORK=${CMAKE_BINARY_DIR}/man
            -DOUT=${_man} -P ${CMAKE_CURRENT_LIST_DIR}/manpage.cmake
    DEPENDS cnnviz ${PROJECT_SOURCE_DIR}/docs/cnnviz.h2m ${CMAKE_CURRENT_LIST_DIR}/manpage.cmake
    COMMENT "Generating the man page (help2man)")
  add_custom_target(cnnviz_man ALL DEPENDS ${_man})
  install(FILES ${_man} DESTINATION ${CMAKE_INSTALL_MANDIR}/man1)
else()
  message(WARNING "cnnviz: help2man not found: no man page (scripts/setup.sh --deps-only)")
endif()

# Debian package. dpkg-shlibdeps (dpkg-dev) names the runtime libraries'
# packages in Depends: exactly what the binary links (LibTorch, OpenCV
# modules, ISA-L, libjpeg, libpng, ...). cnnviz-export needs Python's torch.
set(CPACK_GENERATOR DEB)
set(CPACK_PACKAGE_NAME cnnviz)
set(CPACK_PACKAGE_VENDOR "cnnviz")
set(CPACK_PACKAGE_CONTACT "cnnviz developers <cnnviz@localhost>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY
    "see what an image classifier looks at: attribution maps from TorchScript models")
set(CPACK_PACKAGE_DESCRIPTION
    "cnnviz classifies images with a TorchScript model and writes visual explanations\n\
(Grad-CAM at every layer from one pass, guided backprop, SmoothGrad, Integrated\n\
Gradients, the CAM family, DeepLIFT, LRP, occlusion, RISE) as PNGs, overlays and\n\
raw arrays, over whole datasets, and measures their faithfulness.")
set(CPACK_PACKAGING_INSTALL_PREFIX /usr)
set(CPACK_STRIP_FILES ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)  # cnnviz_<version>_<arch>.deb
set(CPACK_DEBIAN_PACKAGE_SECTION science)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
# LibTorch links libblas.so.3, which Debian resolves to the reference BLAS
# unless an optimized one is installed: 10-20x slower matrix products. The
# OpenMP builds share LibTorch's thread pool.
set(CPACK_DEBIAN_PACKAGE_DEPENDS "libopenblas0-openmp | libblis4-openmp")
set(CPACK_DEBIAN_PACKAGE_RECOMMENDS "python3-torch, python3-torchvision")
set(CPACK_DEBIAN_PACKAGE_SUGGESTS "bash-completion")
set(CPACK_DEBIAN_COMPRESSION_TYPE gzip)  # xz of LibTorch-sized binaries is slow
include(CPack)
