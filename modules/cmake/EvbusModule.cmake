# evbus_add_module(): one static library per domain module, with its boundary enforced.
#
#   evbus_add_module(<name> SOURCES <src>... [LINKS <target>...])
#
# makes the target evbus_module_<name> (alias payments::<name>) from modules/<name>/:
#   include/  its public face (its wiring function and its public types), on the include path
#             of whoever links it;
#   src/      private: on the module's own include path only, so no other target can include
#             a module's internals by a plain #include.
# It links evbus::core publicly; LINKS adds more (the shared event contract, Debian libraries).
#
# The boundary rule: a module never links another module, directly or through a non-module
# library. The check runs once the whole project is read (a deferred call at the end of the
# top-level directory), so a target_link_libraries() added anywhere later is caught too, and
# configuring fails with a message naming both modules and the path between them.
#
# evbus_add_contract(<target>) declares the shared event contract: a library every module may
# link, which itself must not link any module.
include_guard(GLOBAL)

function(evbus_add_module name)
    cmake_parse_arguments(PARSE_ARGV 1 arg "" "" "SOURCES;LINKS")
    if(arg_UNPARSED_ARGUMENTS)
        message(FATAL_ERROR "evbus_add_module(${name}): unexpected arguments "
            "'${arg_UNPARSED_ARGUMENTS}'; use SOURCES <files> [LINKS <targets>]")
    endif()
    if(NOT arg_SOURCES)
        message(FATAL_ERROR "evbus_add_module(${name}): a module needs SOURCES")
    endif()
    set(target evbus_module_${name})
    add_library(${target} STATIC ${arg_SOURCES})
    add_library(payments::${name} ALIAS ${target})
    target_include_directories(${target}
        PUBLIC ${CMAKE_CURRENT_SOURCE_DIR}/include
        PRIVATE ${CMAKE_CURRENT_SOURCE_DIR}/src)
    target_link_libraries(${target}
        PUBLIC evbus::core ${arg_LINKS}
        PRIVATE $<BUILD_INTERFACE:evbus_warnings>)
    set_target_properties(${target} PROPERTIES EVBUS_MODULE "${name}")
    set_property(GLOBAL APPEND PROPERTY EVBUS_MODULE_TARGETS ${target})
    _evbus_defer_boundary_check()
endfunction()

function(evbus_add_contract target)
    if(NOT TARGET ${target})
        message(FATAL_ERROR "evbus_add_contract(${target}): no such target")
    endif()
    set_property(GLOBAL APPEND PROPERTY EVBUS_CONTRACT_TARGETS ${target})
    _evbus_defer_boundary_check()
endfunction()

# ---- the check -------------------------------------------------------------------------------

function(_evbus_defer_boundary_check)
    get_property(deferred GLOBAL PROPERTY EVBUS_BOUNDARY_CHECK_DEFERRED)
    if(NOT deferred)
        set_property(GLOBAL PROPERTY EVBUS_BOUNDARY_CHECK_DEFERRED TRUE)
        cmake_language(DEFER DIRECTORY ${CMAKE_SOURCE_DIR} CALL _evbus_check_module_boundaries)
    endif()
endfunction()

# The real target behind a link item: generator expressions unwrapped ($<BUILD_INTERFACE:x>,
# $<LINK_ONLY:x>, $<$<CONFIG:Debug>:x>: the check is conservative and looks at x whatever the
# condition), aliases resolved. Empty when the item is not a target (a flag, a file, -lfoo).
function(_evbus_link_target item out)
    set(name "${item}")
    while(name MATCHES "^\\$<.*>$")
        string(REGEX REPLACE "^\\$<(\\$<[^>]*>|[^:>]*):(.*)>$" "\\2" unwrapped "${name}")
        if(unwrapped STREQUAL name)
            break()
        endif()
        set(name "${unwrapped}")
    endwhile()
    set(result "")
    if(name AND NOT name MATCHES "[$<>;]" AND TARGET ${name})
        get_target_property(aliased ${name} ALIASED_TARGET)
        if(aliased)
            set(result ${aliased})
        else()
            set(result ${name})
        endif()
    endif()
    set(${out} "${result}" PARENT_SCOPE)
endfunction()

# Every target `target` links, with the path to it ("a -> b -> c"), walking through libraries
# that are not modules. Results: <prefix>_targets and, per target T, <prefix>_path_<T>.
function(_evbus_walk_links start prefix)
    set(queue ${start})
    set(seen ${start})
    set(path_${start} ${start})
    set(found "")
    get_property(modules GLOBAL PROPERTY EVBUS_MODULE_TARGETS)
    while(queue)
        list(POP_FRONT queue current)
        set(items "")
        get_target_property(type ${current} TYPE)
        if(NOT type STREQUAL "INTERFACE_LIBRARY")
            get_target_property(direct ${current} LINK_LIBRARIES)
            if(direct)
                list(APPEND items ${direct})
            endif()
        endif()
        get_target_property(interface ${current} INTERFACE_LINK_LIBRARIES)
        if(interface)
            list(APPEND items ${interface})
        endif()
        foreach(item IN LISTS items)
            _evbus_link_target("${item}" linked)
            if(NOT linked OR linked IN_LIST seen)
                continue()
            endif()
            get_target_property(linked_imported ${linked} IMPORTED)
            list(APPEND seen ${linked})
            set(path_${linked} "${path_${current}} -> ${linked}")
            list(APPEND found ${linked})
            # Modules end the walk (they are what we look for); imported targets cannot link
            # ours.
            if(NOT linked IN_LIST modules AND NOT linked_imported)
                list(APPEND queue ${linked})
            endif()
        endforeach()
    endwhile()
    set(${prefix}_targets ${found} PARENT_SCOPE)
    foreach(t IN LISTS found)
        set(${prefix}_path_${t} "${path_${t}}" PARENT_SCOPE)
    endforeach()
endfunction()

function(_evbus_check_module_boundaries)
    get_property(modules GLOBAL PROPERTY EVBUS_MODULE_TARGETS)
    get_property(contracts GLOBAL PROPERTY EVBUS_CONTRACT_TARGETS)
    set(errors "")
    foreach(from IN LISTS modules contracts)
        if(from IN_LIST modules)
            get_target_property(from_name ${from} EVBUS_MODULE)
            set(from_text "module '${from_name}'")
        else()
            set(from_text "the event contract '${from}'")
        endif()
        _evbus_walk_links(${from} walk)
        foreach(to IN LISTS walk_targets)
            if(to IN_LIST modules)
                get_target_property(to_name ${to} EVBUS_MODULE)
                string(APPEND errors "  ${from_text} links module '${to_name}' "
                    "(${walk_path_${to}})\n")
            endif()
        endforeach()
    endforeach()
    if(errors)
        message(FATAL_ERROR "evbus: module boundary broken; a module may link only evbus::core "
            "and the event contract, never another module:\n${errors}"
            "Modules talk through events: move the shared type into the contract, or wire the "
            "modules together in the composition root (app/).")
    endif()
endfunction()
