# Workarounds for building against the ROS 2 wheels from PyPI (no ROS distro).
# On a real ROS 2 install neither macro changes anything: no imported target
# mentions the wheel build machine's paths, and the generated Python target's
# include directories lie outside the source tree.

# The wheels' exported CMake targets hard-code include directories of the
# machine they were built on (/opt/python/...). Replace those with this
# interpreter's Python and NumPy headers.
macro(neuflow_point_wheel_targets_at_local_python)
  find_package(Python3 REQUIRED COMPONENTS Interpreter Development.Module NumPy)
  get_property(_neuflow_targets DIRECTORY PROPERTY IMPORTED_TARGETS)
  foreach(_target IN LISTS _neuflow_targets)
    get_target_property(_dirs ${_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_dirs AND "${_dirs}" MATCHES "/opt/python/")
      set(_fixed "")
      foreach(_dir IN LISTS _dirs)
        if("${_dir}" MATCHES "/opt/python/")
          list(APPEND _fixed ${Python3_INCLUDE_DIRS} ${Python3_NumPy_INCLUDE_DIRS})
        else()
          list(APPEND _fixed "${_dir}")
        endif()
      endforeach()
      list(REMOVE_DUPLICATES _fixed)
      set_target_properties(${_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
    endif()
  endforeach()
endmacro()

# With the virtual environment inside the checkout (.venv/), the NumPy include
# directory lies in the source tree and CMake refuses to export the generated
# Python target. Such directories are only needed while building.
macro(neuflow_keep_generated_python_target_exportable)
  set(_py_target ${PROJECT_NAME}__rosidl_generator_py)
  if(TARGET ${_py_target})
    get_target_property(_dirs ${_py_target} INTERFACE_INCLUDE_DIRECTORIES)
    if(_dirs)
      set(_fixed "")
      foreach(_dir IN LISTS _dirs)
        string(FIND "${_dir}" "${CMAKE_CURRENT_SOURCE_DIR}/" _pos)
        if(_pos EQUAL 0)
          list(APPEND _fixed "$<BUILD_INTERFACE:${_dir}>")
        else()
          list(APPEND _fixed "${_dir}")
        endif()
      endforeach()
      set_target_properties(${_py_target} PROPERTIES INTERFACE_INCLUDE_DIRECTORIES "${_fixed}")
    endif()
  endif()
endmacro()
