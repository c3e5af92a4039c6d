# Warnings for xatm's own targets, sanitizers for everything.
add_library(xatm_warnings INTERFACE)
target_compile_options(xatm_warnings INTERFACE -Wall -Wextra -Wpedantic -Wshadow -Wconversion
                       -Wno-sign-conversion -Wnon-virtual-dtor -Wold-style-cast)
if(XATM_WERROR)
  target_compile_options(xatm_warnings INTERFACE -Werror)
endif()

if(XATM_SANITIZE)
  string(REPLACE ";" "," _xatm_sanitizers "${XATM_SANITIZE}")
  add_compile_options(-fsanitize=${_xatm_sanitizers} -fno-omit-frame-pointer -fno-sanitize-recover=all)
  add_link_options(-fsanitize=${_xatm_sanitizers})
endif()
