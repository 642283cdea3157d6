# libzeroize-shield: shielded secrets (include/zeroize_shield.h), a library of
# its own on top of libzeroize, so that libzeroize keeps no dependency.  It
# links libzeroize and libsodium (XChaCha20-Poly1305, BLAKE2b).
#   -DZZ_SHIELD=AUTO (default)  built when pkg-config finds libsodium
#   -DZZ_SHIELD=ON              libsodium is required
#   -DZZ_SHIELD=OFF             not built
set(ZZ_SHIELD AUTO CACHE STRING "Build libzeroize-shield (needs libsodium): AUTO, ON or OFF")
set_property(CACHE ZZ_SHIELD PROPERTY STRINGS AUTO ON OFF)
set(ZZ_HAVE_SHIELD OFF)
if(NOT ZZ_SHIELD STREQUAL "OFF")
  find_package(PkgConfig QUIET)
  if(PkgConfig_FOUND)
    pkg_check_modules(ZZ_SODIUM QUIET libsodium)
  endif()
  if(ZZ_SODIUM_FOUND)
    set(ZZ_HAVE_SHIELD ON)
    message(STATUS "zeroize: building libzeroize-shield (libsodium ${ZZ_SODIUM_VERSION})")
  elseif(ZZ_SHIELD STREQUAL "ON")
    message(FATAL_ERROR "zeroize: -DZZ_SHIELD=ON needs libsodium (apt install libsodium-dev)")
  else()
    message(STATUS "zeroize: libsodium not found: libzeroize-shield is not built (apt install libsodium-dev)")
  endif()
endif()

if(ZZ_HAVE_SHIELD)
  set(ZZ_SHIELD_SOURCES src/shield/os.c src/shield/keyring.c src/shield/seal.c)
  add_library(zeroize_shield_objects OBJECT ${ZZ_SHIELD_SOURCES})
  set_target_properties(zeroize_shield_objects PROPERTIES
    C_STANDARD 11 C_STANDARD_REQUIRED ON C_EXTENSIONS OFF
    POSITION_INDEPENDENT_CODE ON C_VISIBILITY_PRESET hidden)
  target_compile_options(zeroize_shield_objects PRIVATE ${ZZ_WARNINGS} -fstack-protector-strong
    ${ZZ_SODIUM_CFLAGS_OTHER})
  target_compile_definitions(zeroize_shield_objects PRIVATE _GNU_SOURCE)
  target_include_directories(zeroize_shield_objects PRIVATE
    ${PROJECT_SOURCE_DIR}/include ${ZZ_SODIUM_INCLUDE_DIRS})

  add_library(zeroize_shield SHARED $<TARGET_OBJECTS:zeroize_shield_objects>)
  add_library(zeroize_shield_static STATIC $<TARGET_OBJECTS:zeroize_shield_objects>)
  target_link_libraries(zeroize_shield PUBLIC zeroize PRIVATE ${ZZ_SODIUM_LINK_LIBRARIES})
  target_link_libraries(zeroize_shield_static PUBLIC zeroize_static ${ZZ_SODIUM_LINK_LIBRARIES})
  foreach(t zeroize_shield zeroize_shield_static)
    target_include_directories(${t} PUBLIC
      $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/include>
      $<INSTALL_INTERFACE:${CMAKE_INSTALL_INCLUDEDIR}>)
  endforeach()
  set_target_properties(zeroize_shield PROPERTIES
    OUTPUT_NAME zeroize-shield VERSION ${PROJECT_VERSION} SOVERSION ${PROJECT_VERSION_MAJOR}
    PUBLIC_HEADER include/zeroize_shield.h)
  # libzeroize.so.0 sits next to it: found wherever the prefix is moved
  # (relocatable, as zeroize.pc; a distribution may drop it with
  # CMAKE_SKIP_INSTALL_RPATH, its libraries being on the default path).
  set_target_properties(zeroize_shield PROPERTIES INSTALL_RPATH "$ORIGIN")
  set_target_properties(zeroize_shield_static PROPERTIES OUTPUT_NAME zeroize-shield)
  if(NOT ZZ_SANITIZE)
    target_link_options(zeroize_shield PRIVATE "LINKER:-z,defs" "LINKER:-z,relro" "LINKER:-z,now")
  endif()
  # Every exported symbol carries a version of the shield's own
  # (ZEROIZE_SHIELD_0.1): docs/ABI.md.
  target_link_options(zeroize_shield PRIVATE
    "LINKER:--version-script=${PROJECT_SOURCE_DIR}/src/shield/libzeroize-shield.map")
  set_property(TARGET zeroize_shield APPEND PROPERTY LINK_DEPENDS
    "${PROJECT_SOURCE_DIR}/src/shield/libzeroize-shield.map")
  add_library(zeroize::zeroize_shield ALIAS zeroize_shield)
  add_library(zeroize::zeroize_shield_static ALIAS zeroize_shield_static)

  install(TARGETS zeroize_shield zeroize_shield_static EXPORT zeroizeShieldTargets
    LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR}
    ARCHIVE DESTINATION ${CMAKE_INSTALL_LIBDIR}
    PUBLIC_HEADER DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}
    INCLUDES DESTINATION ${CMAKE_INSTALL_INCLUDEDIR})
  install(EXPORT zeroizeShieldTargets NAMESPACE zeroize::
    DESTINATION ${CMAKE_INSTALL_LIBDIR}/cmake/zeroize)
  configure_file(cmake/zeroize-shield.pc.in ${PROJECT_BINARY_DIR}/zeroize-shield.pc @ONLY)
  install(FILES ${PROJECT_BINARY_DIR}/zeroize-shield.pc DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
endif()
